# Runs one example against `wscengine serve` and checks its exit status and output.
#   -DCLI=<wscengine> -DEXAMPLE=<binary> -DSERVE_ARGS="--mode;echo" -DEXAMPLE_ARGS="..." -DEXPECT="a;b"
separate_arguments(serve_args UNIX_COMMAND "${SERVE_ARGS}")
string(REPLACE ";" " " serve_line "${serve_args}")
execute_process(COMMAND bash -c "
  set -e
  out=$(mktemp)
  '${CLI}' serve ${serve_line} --seconds 60 > \"$out\" &
  server=$!
  trap 'kill $server 2>/dev/null || true; rm -f \"$out\"' EXIT
  for i in $(seq 1 100); do url=$(head -n1 \"$out\"); [ -n \"$url\" ] && break; sleep 0.1; done
  '${EXAMPLE}' \"$url\" ${EXAMPLE_ARGS}
" OUTPUT_VARIABLE output ERROR_VARIABLE errors RESULT_VARIABLE result TIMEOUT 90)
message("${output}${errors}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${EXAMPLE} failed: ${result}")
endif()
foreach(expected IN LISTS EXPECT)
  string(FIND "${output}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "output lacks '${expected}'")
  endif()
endforeach()
