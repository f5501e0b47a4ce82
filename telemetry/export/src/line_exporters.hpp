// Private: the "lines" exporters, one line per span or metric point.
#pragma once

#include <opentelemetry/sdk/metrics/push_metric_exporter.h>
#include <opentelemetry/sdk/trace/exporter.h>

#include <memory>
#include <ostream>

namespace wscengine::otel::detail {

std::unique_ptr<opentelemetry::sdk::trace::SpanExporter> make_line_span_exporter(std::shared_ptr<std::ostream> out);
std::unique_ptr<opentelemetry::sdk::metrics::PushMetricExporter> make_line_metric_exporter(
    std::shared_ptr<std::ostream> out);

}  // namespace wscengine::otel::detail
