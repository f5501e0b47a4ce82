# Runs the demo server and feed_client together; checks the client saw messages,
# a dropped connection (1006) and a reconnect with resubscription; with
# OpenTelemetry, that the "lines" exporters wrote its spans and metrics.
file(REMOVE "${TELEMETRY_FILE}")
execute_process(COMMAND bash -c "
  set -e
  out=$(mktemp)
  '${SERVER}' --port 0 --rate 50 --drop-every 8 --seconds 30 > \"$out\" &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for i in $(seq 1 100); do url=$(head -n1 \"$out\"); [ -n \"$url\" ] && break; sleep 0.1; done
  if [ '${OTEL}' = ON ]; then
    '${CLIENT}' \"$url\" 3 --traces=lines --metrics=lines --telemetry-file='${TELEMETRY_FILE}'
  else
    '${CLIENT}' \"$url\" 3
  fi
" OUTPUT_VARIABLE output ERROR_VARIABLE errors RESULT_VARIABLE result TIMEOUT 90)
message("${output}${errors}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "feed_client failed: ${result}")
endif()
foreach(expected "server says: subscribed: ticks" "code 1006" "reconnected" "tick ")
  string(FIND "${output}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "feed_client output lacks '${expected}'")
  endif()
endforeach()
if(OTEL STREQUAL "ON")
  file(READ "${TELEMETRY_FILE}" telemetry)
  foreach(expected "span feed.tick " "span wscengine.on_message " "span wscengine.read " "span wscengine.restart "
                   "wscengine.close.code=1006" "metric wscengine.messages.received" "metric wscengine.reconnect.successes")
    string(FIND "${telemetry}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "feed_client telemetry lacks '${expected}'")
    endif()
  endforeach()
endif()
