# The libFuzzer targets and the library each links: built by
# tests/fuzz/CMakeLists.txt (GEOMX_FUZZ=ON), replayed by tests/CMakeLists.txt.
set(GEOMX_FUZZ_LIBS proxy_header geomx_proxy config geomx_conf lists geomx_geo blocks geomx_state
    mmdb geomx_geo admin geomx_admin store_record geomx_state smtp_screen geomx_policy
    policy_request geomx_policy)
