// download.hpp - fetch a --loadcheck URL into a local cache, with libcurl.
//
// Only http:// and https:// are fetched (redirects too); every other scheme is
// refused. The file lands in the cache folder under
// "<16 hex digits of a hash of the URL>-<sanitised basename>", written through
// ckpt::AtomicFile (a temp file in the cache folder, renamed into place when
// complete), next to a "<same>.url" record (the URL and the byte count). A
// later fetch of the same URL reuses a cached file whose record matches
// without touching the network. See docs/download.md.
//
// Errors are ckpt::Error with the (credential-free) URL as path():
//   invalid_argument  a scheme other than http/https, an empty host
//   io_error          HTTP status >= 400 ("HTTP 404"), DNS/connect failure,
//                     timeouts, a body shorter than its Content-Length,
//                     too many redirects, cache folder problems
//   limit_exceeded    Content-Length or the streamed body above max_bytes
// An HTML page served instead of a checkpoint is not detected here; libckpt's
// Checkpoint::open reports it as html_page.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ckpt::train {

/// True when `s` starts with "<scheme>://" (RFC 3986 scheme characters), so
/// that "file:///x" or "ftp://h/x" are treated as URLs and refused by fetch()
/// instead of being opened as odd relative paths.
bool is_url(std::string_view s);

struct DownloadOptions {
  std::string cache_dir;               ///< empty: $XDG_CACHE_HOME/ckpt, else ~/.cache/ckpt
  uint64_t max_bytes = 16ull << 30;    ///< refuse bodies larger than this
  long connect_timeout_s = 30;         ///< TCP + TLS connect
  long idle_timeout_s = 60;            ///< abort when under 1 byte/s for this long
  bool progress = true;                ///< progress line on stderr, only if stderr is a TTY
};

/// The cache folder fetch() uses for `opts` (created on demand by fetch).
std::string cache_dir(const DownloadOptions& opts);

/// The path a URL is cached under in `dir` (whether or not it exists).
std::string cache_path(const std::string& dir, std::string_view url);

/// Downloads `url` (or reuses the cached copy) and returns the local path.
/// Thread-safe; concurrent fetches of one URL each write their own temp file
/// and the last rename wins (both files are complete).
std::string fetch(const std::string& url, const DownloadOptions& opts);

}  // namespace ckpt::train
