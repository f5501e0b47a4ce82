# Debian packages with CPack: `cpack -G DEB` in a build directory makes
#   libwscengine-dev  headers, static libraries, CMake package and pkg-config files
#   wscengine         the command-line tool (connect, serve, bench)
# Their dependencies are the Debian packages the build used, so that
# `apt-get install ./libwscengine-dev_*.deb` gives a consumer everything it needs.
set(CPACK_PACKAGE_NAME wscengine)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VENDOR "wscengine developers")
set(CPACK_PACKAGE_CONTACT "wscengine developers <wscengine-dev@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)

set(CPACK_COMPONENTS_ALL dev)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libwscengine-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "wscengine: a callback-based WebSocket client engine (C++20)\n Headers, static libraries (core, memory and the Boost.Beast and websocketpp\n adapters, OpenTelemetry), the CMake package and pkg-config files.")
set(_wscengine_dev_depends "libboost-dev (>= 1.74)")
if(WSCENGINE_BUILD_BEAST OR WSCENGINE_BUILD_WEBSOCKETPP)
  string(APPEND _wscengine_dev_depends ", libssl-dev")
endif()
if(WSCENGINE_BUILD_BEAST)
  string(APPEND _wscengine_dev_depends ", libnghttp2-dev")
endif()
if(WSCENGINE_BUILD_WEBSOCKETPP)
  string(APPEND _wscengine_dev_depends ", libwebsocketpp-dev")
endif()
if(WSCENGINE_HAVE_OTEL)
  # opentelemetry-cpp's CMake package needs these to be found (see scripts/setup-debian.sh).
  string(APPEND _wscengine_dev_depends
    ", opentelemetry-cpp-dev, libabsl-dev, libgrpc++-dev, libprotobuf-dev, protobuf-compiler-grpc, libcurl4-openssl-dev")
endif()
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${_wscengine_dev_depends}")

if(TARGET wscengine_cli)
  list(APPEND CPACK_COMPONENTS_ALL tools)
  set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME wscengine)
  set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION net)
  set(CPACK_DEBIAN_TOOLS_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps finds the shared libraries it needs
  set(CPACK_COMPONENT_TOOLS_DESCRIPTION
    "wscengine command-line tool\n wscengine connect (a WebSocket client with reconnects, proxies, TLS and traces),\n serve (a local test server) and bench (throughput and latency of a server).")
endif()

include(CPack)
