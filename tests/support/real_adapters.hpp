// The adapters over real sockets that the integration and contract suites run on.
// Adding an adapter to the test suites means adding one line here.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <wscengine/beast.hpp>
#include <wscengine/websocketpp.hpp>

namespace wscengine::test {

struct RealAdapter {
  std::string name;
  std::function<std::shared_ptr<Connector>()> make;
};

inline const std::vector<RealAdapter>& real_adapters() {
  static const std::vector<RealAdapter> adapters = {
      {"beast", [] { return beast::make_connector(); }},
      {"websocketpp", [] { return websocketpp::make_connector(); }},
  };
  return adapters;
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
