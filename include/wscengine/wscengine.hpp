// wscengine — everything a user of the engine needs (no adapter, no Asio).
#pragma once

#include <wscengine/client.hpp>
#include <wscengine/connection.hpp>
#include <wscengine/correlator.hpp>
#include <wscengine/engine.hpp>
#include <wscengine/error.hpp>
#include <wscengine/message.hpp>
#include <wscengine/options.hpp>
#include <wscengine/runtime.hpp>
#include <wscengine/stats.hpp>
#include <wscengine/telemetry.hpp>
#include <wscengine/url.hpp>
#include <wscengine/version.hpp>
