{
  "targets": [
    {
      "target_name": "honeytrap_bpf",
      "sources": [
        "src/addon.cc",
        "src/batch-pump.cc",
        "src/bpf-error.cc",
        "src/bpf-object.cc",
        "src/js-error.cc",
        "src/listening-ports.cc",
        "src/netns-query.cc",
        "src/steering.cc",
        "src/syn-facts.cc",
        "src/udp-catch-all.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    },
    {
      "target_name": "honeytrap_socket",
      "sources": ["src/socket-addon.cc", "src/served-socket.cc", "src/js-error.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]
    }
  ]
}
