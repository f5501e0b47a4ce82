// The adapters over real sockets that the integration and contract suites run on.
// Adding an adapter to the test suites means adding one line here.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <wscengine/beast.hpp>
#include <wscengine/options.hpp>
#include <wscengine/websocketpp.hpp>

namespace wscengine::test {

struct RealAdapter {
  std::string name;
  std::function<std::shared_ptr<Connector>()> make;
  /// For the engine suites: the delivery mode their engines use.
  Delivery delivery = Delivery::callback_pool;
};

inline const std::vector<RealAdapter>& real_adapters() {
  static const std::vector<RealAdapter> adapters = {
      {"beast", [] { return beast::make_connector(); }},
      {"websocketpp", [] { return websocketpp::make_connector(); }},
  };
  return adapters;
}

/// The engine suites run on every real adapter in every delivery mode
/// ("beast", "beast_io_thread", …): the engine's guarantees hold in each.
inline const std::vector<RealAdapter>& engine_variants() {
  static const std::vector<RealAdapter> variants = [] {
    std::vector<RealAdapter> out;
    for (const auto& adapter : real_adapters()) {
      out.push_back(adapter);
      out.push_back({adapter.name + "_io_thread", adapter.make, Delivery::io_thread});
    }
    return out;
  }();
  return variants;
}

/// gtest prints the adapter by its name.
inline void PrintTo(const RealAdapter& adapter, std::ostream* os) { *os << adapter.name; }

/// Names parameterised tests after the adapter ("…/beast").
struct AdapterName {
  template <class Info>
  std::string operator()(const Info& info) const {
    return info.param.name;
  }
};

}  // namespace wscengine::test
