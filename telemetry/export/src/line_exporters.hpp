// Private: the "lines" exporters, one line per span or metric point.
#pragma once

#include <opentelemetry/sdk/metrics/push_metric_exporter.h>
#include <opentelemetry/sdk/trace/exporter.h>

#include <memory>
#include <ostream>

#include <mutex>
#include <string>

namespace wscengine::otel::detail {

/// One output shared by the span and metric exporters: each export is written as a
/// whole block under one lock, so that lines of the two never interleave.
/// Thread safety: write may be called from any thread.
class LineSink {
 public:
  explicit LineSink(std::shared_ptr<std::ostream> out) : out_(std::move(out)) {}
  void write(const std::string& block) {
    std::lock_guard lock(mutex_);
    *out_ << block;
    out_->flush();
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<std::ostream> out_;
};

std::unique_ptr<opentelemetry::sdk::trace::SpanExporter> make_line_span_exporter(std::shared_ptr<LineSink> sink);
std::unique_ptr<opentelemetry::sdk::metrics::PushMetricExporter> make_line_metric_exporter(
    std::shared_ptr<LineSink> sink);

}  // namespace wscengine::otel::detail
