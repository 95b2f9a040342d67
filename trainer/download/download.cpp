// download.cpp - see download.hpp.
#include "download.hpp"

#include <curl/curl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

#include "ckpt/atomic_file.hpp"
#include "ckpt/error.hpp"

namespace ckpt::train {
namespace {

constexpr long kMaxRedirects = 10;
constexpr size_t kMaxBasename = 96;
constexpr const char* kRecordMagic = "ckpt-download 1";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool is_http_scheme(std::string_view url) {
  std::string head = lower(url.substr(0, 8));
  return head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0;
}

/// The URL without "user:password@", for messages and the progress line.
std::string redact(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  size_t host = scheme_end + 3;
  size_t end = url.find_first_of("/?#", host);
  auto at = url.substr(host, end == std::string_view::npos ? std::string_view::npos : end - host).rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, host)) + std::string(url.substr(host + at + 1));
}

/// Last path segment, without query or fragment, reduced to [A-Za-z0-9._-].
std::string url_basename(std::string_view url) {
  auto scheme_end = url.find("://");
  std::string_view rest = scheme_end == std::string_view::npos ? url : url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("?#"));
  auto slash = rest.find('/');
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  std::string_view last = path.substr(path.empty() ? 0 : path.rfind('/') + 1);
  std::string name;
  for (char c : last) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    name += ok ? c : '_';
  }
  while (!name.empty() && name.front() == '.') name.erase(0, 1);  // no hidden or ".." names
  if (name.size() > kMaxBasename) name.erase(0, name.size() - kMaxBasename);
  return name.empty() ? "download" : name;
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

Error url_error(ErrorCode code, const std::string& detail, std::string_view url) {
  return Error(code, detail, redact(url));
}

void global_init() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) throw Error(ErrorCode::internal, std::string("curl_global_init: ") + curl_easy_strerror(rc));
}

std::string home_dir() {
  if (const char* h = std::getenv("HOME"); h && *h) return h;
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  throw Error(ErrorCode::invalid_argument, "no cache folder: set XDG_CACHE_HOME or HOME, or pass one");
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::io_error, "cannot create the download cache folder: " + ec.message(), dir, {},
                      Error::no_offset, {}, ec.value());
  ::chmod(dir.c_str(), 0700);  // best effort: URLs and files are the user's own
}

// ---- the cache record: "<file>.url" = magic, URL, byte count ----------------

std::string record_path(const std::string& file) { return file + ".url"; }

bool cached_copy_matches(const std::string& file, std::string_view url) {
  std::ifstream in(record_path(file));
  std::string magic, recorded_url, bytes;
  if (!std::getline(in, magic) || magic != kRecordMagic) return false;
  if (!std::getline(in, recorded_url) || recorded_url != url) return false;
  if (!std::getline(in, bytes)) return false;
  std::error_code ec;
  auto size = std::filesystem::file_size(file, ec);
  return !ec && std::to_string(size) == bytes;
}

void write_record(const std::string& file, std::string_view url, uint64_t bytes) {
  std::string text = std::string(kRecordMagic) + "\n" + std::string(url) + "\n" + std::to_string(bytes) + "\n";
  AtomicFile out(record_path(file));
  out.write(text.data(), text.size());
  out.commit();
}

// ---- the transfer -----------------------------------------------------------

struct Transfer {
  AtomicFile* file = nullptr;
  uint64_t received = 0;
  uint64_t max_bytes = 0;
  bool over_limit = false;
  bool stalled = false;
  std::exception_ptr write_error;
  // idle detection: curl's own low-speed check averages over ~5 s windows, so
  // a stall after a burst would take idle + 5 s; this clock is exact to ~1 s.
  std::chrono::steady_clock::duration idle_limit{};
  std::chrono::steady_clock::time_point last_data = std::chrono::steady_clock::now();
  // progress
  bool show_progress = false;
  bool printed = false;
  std::string label;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_print{};
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  if (t->received + bytes > t->max_bytes) {
    t->over_limit = true;
    return 0;  // CURLE_WRITE_ERROR
  }
  try {
    t->file->write(data, bytes);
  } catch (...) {
    t->write_error = std::current_exception();
    return 0;
  }
  t->received += bytes;
  t->last_data = std::chrono::steady_clock::now();
  return bytes;
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

void print_progress(Transfer& t, curl_off_t total, bool final_line) {
  auto now = std::chrono::steady_clock::now();
  if (!final_line && now - t.last_print < std::chrono::milliseconds(100)) return;
  t.last_print = now;
  double secs = std::chrono::duration<double>(now - t.start).count();
  std::string line = "\r" + t.label + ": " + human(static_cast<double>(t.received));
  if (total > 0) {
    char pct[16];
    std::snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * static_cast<double>(t.received) / static_cast<double>(total));
    line += " / " + human(static_cast<double>(total)) + pct;
  }
  if (secs > 0) line += "  " + human(static_cast<double>(t.received) / secs) + "/s";
  line += "\x1b[K";  // clear the rest of the line
  if (final_line) line += "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  t.printed = true;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (std::chrono::steady_clock::now() - t->last_data > t->idle_limit) {
    t->stalled = true;
    return 1;  // CURLE_ABORTED_BY_CALLBACK
  }
  if (t->show_progress && t->received > 0) print_progress(*t, dltotal, false);
  return 0;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;

template <typename T>
void set(CURL* c, CURLoption opt, T value) {
  if (CURLcode rc = curl_easy_setopt(c, opt, value); rc != CURLE_OK)
    throw Error(ErrorCode::internal, std::string("curl_easy_setopt: ") + curl_easy_strerror(rc));
}

void configure(CURL* c, const std::string& url, const DownloadOptions& opts, Transfer& t, char* errbuf) {
  set(c, CURLOPT_URL, url.c_str());
  set(c, CURLOPT_PROTOCOLS_STR, "http,https");
  set(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  set(c, CURLOPT_FOLLOWLOCATION, 1L);
  set(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  set(c, CURLOPT_FAILONERROR, 1L);
  set(c, CURLOPT_NOSIGNAL, 1L);
  set(c, CURLOPT_USERAGENT, "ckpt-train");
  set(c, CURLOPT_CONNECTTIMEOUT, opts.connect_timeout_s);
  set(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  set(c, CURLOPT_LOW_SPEED_TIME, opts.idle_timeout_s);
  set(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(std::min<uint64_t>(opts.max_bytes, INT64_MAX)));
  set(c, CURLOPT_WRITEFUNCTION, on_data);
  set(c, CURLOPT_WRITEDATA, &t);
  set(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  set(c, CURLOPT_XFERINFODATA, &t);
  set(c, CURLOPT_NOPROGRESS, 0L);
  set(c, CURLOPT_ERRORBUFFER, errbuf);
}

[[noreturn]] void throw_transfer_error(CURL* c, CURLcode rc, const Transfer& t, const std::string& url,
                                       const DownloadOptions& opts, const char* errbuf) {
  if (t.write_error) std::rethrow_exception(t.write_error);
  std::string limit = "the download limit of " + std::to_string(opts.max_bytes) + " bytes";
  if (t.over_limit) throw url_error(ErrorCode::limit_exceeded, "the body grew beyond " + limit, url);
  if (t.stalled)
    throw url_error(ErrorCode::io_error, "download stalled after " + std::to_string(t.received) + " bytes (no data for " +
                                             std::to_string(opts.idle_timeout_s) + " s)", url);
  if (rc == CURLE_FILESIZE_EXCEEDED)
    throw url_error(ErrorCode::limit_exceeded, "Content-Length is above " + limit, url);
  if (rc == CURLE_HTTP_RETURNED_ERROR) {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    throw url_error(ErrorCode::io_error, "HTTP " + std::to_string(status), url);
  }
  std::string why = *errbuf ? errbuf : curl_easy_strerror(rc);
  if (rc == CURLE_OPERATION_TIMEDOUT)
    why += " (no data for " + std::to_string(opts.idle_timeout_s) + " s or connect above " +
           std::to_string(opts.connect_timeout_s) + " s)";
  if (rc == CURLE_PARTIAL_FILE) why += " (the body is shorter than its Content-Length)";
  if (rc == CURLE_UNSUPPORTED_PROTOCOL) why += " (only http and https are fetched, redirects included)";
  throw url_error(ErrorCode::io_error, "download failed after " + std::to_string(t.received) + " bytes: " + why,
                  url);
}

void check_complete(CURL* c, const Transfer& t, const std::string& url) {
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300 || status == 206)
    throw url_error(ErrorCode::io_error, "unexpected HTTP " + std::to_string(status), url);
  curl_off_t expected = -1;
  curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected);
  if (expected >= 0 && static_cast<uint64_t>(expected) != t.received)
    throw url_error(ErrorCode::io_error,
                    "got " + std::to_string(t.received) + " of " + std::to_string(expected) + " bytes", url);
}

void download_to(const std::string& url, const std::string& dest, const DownloadOptions& opts) {
  global_init();
  CurlHandle curl(curl_easy_init());
  if (!curl) throw url_error(ErrorCode::internal, "curl_easy_init failed", url);
  AtomicFile file(dest);
  Transfer t;
  t.file = &file;
  t.max_bytes = opts.max_bytes;
  t.idle_limit = std::chrono::seconds(opts.idle_timeout_s);
  t.show_progress = opts.progress && ::isatty(STDERR_FILENO);
  t.label = url_basename(url);
  char errbuf[CURL_ERROR_SIZE] = {0};
  configure(curl.get(), url, opts, t, errbuf);
  CURLcode rc = curl_easy_perform(curl.get());
  if (t.printed) std::fputc('\n', stderr);
  if (rc != CURLE_OK) throw_transfer_error(curl.get(), rc, t, url, opts, errbuf);
  check_complete(curl.get(), t, url);
  file.commit();
  if (t.show_progress) print_progress(t, static_cast<curl_off_t>(t.received), true);
}

}  // namespace

bool is_url(std::string_view s) {
  auto colon = s.find("://");
  if (colon == std::string_view::npos || colon == 0) return false;
  if (!std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

std::string cache_dir(const DownloadOptions& opts) {
  if (!opts.cache_dir.empty()) return opts.cache_dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x == '/') return std::string(x) + "/ckpt";
  return home_dir() + "/.cache/ckpt";
}

std::string cache_path(const std::string& dir, std::string_view url) {
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016" PRIx64, fnv1a64(url));
  return dir + "/" + hash + "-" + url_basename(url);
}

std::string fetch(const std::string& url, const DownloadOptions& opts) {
  if (!is_http_scheme(url)) {
    auto end = url.find("://");
    std::string scheme = end == std::string::npos ? url : url.substr(0, end);
    throw url_error(ErrorCode::invalid_argument, "only http:// and https:// URLs are downloaded, not '" + scheme + "'",
                    url);
  }
  auto host = url.find("://") + 3;
  if (host >= url.size() || url[host] == '/' || url[host] == '?' || url[host] == '#')
    throw url_error(ErrorCode::invalid_argument, "the URL has no host", url);
  if (opts.max_bytes == 0) throw url_error(ErrorCode::invalid_argument, "max_bytes is 0", url);

  std::string dir = cache_dir(opts);
  make_dirs(dir);
  std::string dest = cache_path(dir, url);
  if (cached_copy_matches(dest, url)) return dest;
  std::error_code ec;
  std::filesystem::remove(record_path(dest), ec);  // a stale record must not vouch for the new file
  download_to(url, dest, opts);
  write_record(dest, url, std::filesystem::file_size(dest));
  return dest;
}

}  // namespace ckpt::train
