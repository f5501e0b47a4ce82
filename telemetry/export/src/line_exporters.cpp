// The "lines" exporters: one line per span or metric point, readable by eye and by
// grep (the demo shows a message's trace with them).
#include "line_exporters.hpp"

#include <opentelemetry/sdk/metrics/export/metric_producer.h>
#include <opentelemetry/sdk/trace/span_data.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace wscengine::otel::detail {
namespace {

namespace nostd = opentelemetry::nostd;
namespace sdktrace = opentelemetry::sdk::trace;
namespace sdkmetrics = opentelemetry::sdk::metrics;
namespace sdkcommon = opentelemetry::sdk::common;

std::string value_text(const sdkcommon::OwnedAttributeValue& value) {
  return nostd::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_arithmetic_v<T>) {
          return std::to_string(v);
        } else {
          std::string out = std::to_string(v.size());
          out += " values";
          return out;
        }
      },
      value);
}

// Sorted, so that lines compare well.
template <class Map>
std::string attributes_text(const Map& attributes) {
  std::map<std::string, std::string> sorted;
  for (const auto& [key, value] : attributes) sorted[key] = value_text(value);
  std::string out;
  for (const auto& [key, value] : sorted) {
    out += ' ';
    out += key;
    out += '=';
    out += value;
  }
  return out;
}

// The first 8 hex digits of an id: enough to follow links by eye in one run.
template <class Id>
std::string short_id(const Id& id) {
  char full[2 * Id::kSize + 1] = {};
  id.ToLowerBase16(nostd::span<char, 2 * Id::kSize>(full, 2 * Id::kSize));
  return std::string(full, 8);
}

std::string duration_text(std::chrono::nanoseconds d) {
  char buffer[32];
  auto ns = static_cast<double>(d.count());
  if (ns < 1e3)
    std::snprintf(buffer, sizeof buffer, "%.0fns", ns);
  else if (ns < 1e6)
    std::snprintf(buffer, sizeof buffer, "%.1fus", ns / 1e3);
  else
    std::snprintf(buffer, sizeof buffer, "%.2fms", ns / 1e6);
  return buffer;
}

class LineSpanExporter final : public sdktrace::SpanExporter {
 public:
  explicit LineSpanExporter(std::shared_ptr<LineSink> sink) : sink_(std::move(sink)) {}

  std::unique_ptr<sdktrace::Recordable> MakeRecordable() noexcept override {
    return std::make_unique<sdktrace::SpanData>();
  }

  sdkcommon::ExportResult Export(const nostd::span<std::unique_ptr<sdktrace::Recordable>>& spans) noexcept override {
    std::ostringstream out;
    for (auto& recordable : spans) {
      auto* span = dynamic_cast<sdktrace::SpanData*>(recordable.get());
      if (!span) continue;
      // GCC 12 warns falsely (-Wrestrict) on "literal" + std::string: stream instead.
      out << "span " << span->GetName() << " trace=" << short_id(span->GetTraceId())
          << " id=" << short_id(span->GetSpanId());
      if (span->GetParentSpanId().IsValid()) out << " parent=" << short_id(span->GetParentSpanId());
      for (const auto& link : span->GetLinks()) out << " link=" << short_id(link.GetSpanContext().span_id());
      out << ' ' << duration_text(span->GetDuration()) << attributes_text(span->GetAttributes());
      for (const auto& event : span->GetEvents()) out << " event=\"" << event.GetName() << '"';
      if (span->GetStatus() == opentelemetry::trace::StatusCode::kError)
        out << " ERROR=\"" << span->GetDescription() << '"';
      out << '\n';
    }
    sink_->write(out.str());
    return sdkcommon::ExportResult::kSuccess;
  }

  bool ForceFlush(std::chrono::microseconds) noexcept override { return true; }  // written at export
  bool Shutdown(std::chrono::microseconds) noexcept override { return ForceFlush({}); }

 private:
  std::shared_ptr<LineSink> sink_;
};

class LineMetricExporter final : public sdkmetrics::PushMetricExporter {
 public:
  explicit LineMetricExporter(std::shared_ptr<LineSink> sink) : sink_(std::move(sink)) {}

  sdkcommon::ExportResult Export(const sdkmetrics::ResourceMetrics& data) noexcept override {
    std::ostringstream out;
    for (const auto& scope : data.scope_metric_data_) {
      for (const auto& metric : scope.metric_data_) {
        for (const auto& point : metric.point_data_attr_) {
          out << "metric " << metric.instrument_descriptor.name_;
          std::string attributes = attributes_text(point.attributes);
          if (!attributes.empty()) out << '{' << attributes.substr(1) << '}';
          out << ' ' << point_text(point.point_data) << ' ' << metric.instrument_descriptor.unit_ << '\n';
        }
      }
    }
    sink_->write(out.str());
    return sdkcommon::ExportResult::kSuccess;
  }

  sdkmetrics::AggregationTemporality GetAggregationTemporality(sdkmetrics::InstrumentType) const noexcept override {
    return sdkmetrics::AggregationTemporality::kCumulative;
  }
  bool ForceFlush(std::chrono::microseconds) noexcept override { return true; }  // written at export
  bool Shutdown(std::chrono::microseconds) noexcept override { return ForceFlush({}); }

 private:
  static std::string number(const sdkmetrics::ValueType& v) {
    if (auto* i = nostd::get_if<std::int64_t>(&v)) return std::to_string(*i);
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.6g", nostd::get<double>(v));
    return buffer;
  }
  static std::string point_text(const sdkmetrics::PointType& point) {
    if (auto* sum = nostd::get_if<sdkmetrics::SumPointData>(&point)) return number(sum->value_);
    if (auto* last = nostd::get_if<sdkmetrics::LastValuePointData>(&point)) return number(last->value_);
    if (auto* h = nostd::get_if<sdkmetrics::HistogramPointData>(&point)) {
      std::string out = "count=";
      out += std::to_string(h->count_);
      out += " sum=";
      out += number(h->sum_);
      out += " max=";
      out += number(h->max_);
      return out;
    }
    return "?";
  }

  std::shared_ptr<LineSink> sink_;
};

}  // namespace

std::unique_ptr<sdktrace::SpanExporter> make_line_span_exporter(std::shared_ptr<LineSink> sink) {
  return std::make_unique<LineSpanExporter>(std::move(sink));
}

std::unique_ptr<sdkmetrics::PushMetricExporter> make_line_metric_exporter(std::shared_ptr<LineSink> sink) {
  return std::make_unique<LineMetricExporter>(std::move(sink));
}

}  // namespace wscengine::otel::detail
