// wscengine — the websocketpp objects behind a connection. Includes websocketpp,
// which (0.8.2) compiles as C++17 but not as C++20 with GCC 12: include this from a
// C++17 translation unit, which cannot include the (C++20) wscengine headers: pass
// `underlying().object` there as a void* and cast it to the type `underlying().type`
// names (`as<T>()` does that check in C++20 code that only names the types).
//
// The adapter builds websocketpp with boost::system error codes
// (_WEBSOCKETPP_NO_CPP11_SYSTEM_ERROR_, so that Asio errors keep their identity);
// this header sets the same macro, and must come before any other websocketpp
// header, or the types would differ from the adapter's.
#pragma once

#ifndef _WEBSOCKETPP_NO_CPP11_SYSTEM_ERROR_
#define _WEBSOCKETPP_NO_CPP11_SYSTEM_ERROR_ 1
#endif

#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_client.hpp>

namespace wscengine::websocketpp {

/// The connection of a ws:// URL: `underlying().as<PlainConnection>()`.
using PlainConnection = ::websocketpp::connection<::websocketpp::config::asio_client>;
/// The connection of a wss:// URL: `underlying().as<TlsConnection>()`.
using TlsConnection = ::websocketpp::connection<::websocketpp::config::asio_tls_client>;

}  // namespace wscengine::websocketpp
