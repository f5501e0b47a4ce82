// wscengine — the Boost.Beast adapter (target wscengine::beast). This header does
// not include Beast; wscengine/beast/underlying.hpp does, for users who need the
// library's own objects.
#pragma once

#include <cstddef>
#include <memory>

#include <wscengine/adapter.hpp>

namespace wscengine::beast {

/// Tuning of the Beast adapter. A plain value.
struct BeastOptions {
  /// The most bytes read from the socket at once when data is waiting. Reads start
  /// at 1 KiB and grow (x4) up to this each time one fills its space, so that an
  /// idle connection that only ever got small messages holds a 1 KiB read buffer.
  std::size_t read_chunk = 64 * 1024;
};

/// A connector whose connections use Boost.Beast: ws:// and wss:// (TLS verified
/// against the system store by default, SNI, host name check), extra headers,
/// subprotocols, permessage-deflate offer, maximum message size.
/// Thread safety: the connector may be shared by any number of engines.
std::shared_ptr<Connector> make_connector(BeastOptions options = {});

}  // namespace wscengine::beast
