// Tests of trainer/download against a loopback HTTP server (http_server.py),
// started by this process: real libcurl, real sockets, no mocks.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "ckpt/error.hpp"
#include "download.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using ckpt::train::DownloadOptions;
using ckpt::train::fetch;

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

fs::path make_temp_dir(const std::string& tag) {
  std::string tmpl = (fs::temp_directory_path() / ("ckpt-dl-" + tag + "-XXXXXX")).string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The server process: started once, stopped (stdin closed, then SIGTERM) at exit.
class Server {
 public:
  static Server& get() {
    static Server s;
    return s;
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  const fs::path& root() const { return root_; }

  /// Writes ROOT/name with `size` seeded pseudo-random bytes; returns them.
  std::string add_file(const std::string& name, size_t size) {
    std::mt19937 rng(static_cast<unsigned>(size) ^ 0x5eed);
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    std::ofstream(root_ / name, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
    return data;
  }

  int hits(const std::string& name) const {
    std::string body;
    CURL* c = curl_easy_init();
    std::string u = url("/hits/" + name);
    curl_easy_setopt(c, CURLOPT_URL, u.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* out) {
      static_cast<std::string*>(out)->append(d, s * n);
      return s * n;
    });
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    return std::atoi(body.c_str());
  }

  ~Server() {
    if (pid_ > 0) {
      ::close(to_child_);
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

 private:
  Server() {
    root_ = make_temp_dir("root");
    std::string python = env_or("CKPT_TEST_PYTHON", "/usr/bin/python3");
    std::string script = env_or("CKPT_TEST_HTTP_SERVER", "tests/trainer_aux/http_server.py");
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      std::string r = root_.string();
      ::execl(python.c_str(), python.c_str(), script.c_str(), r.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_child_ = in[1];
    std::string line;
    char ch;
    while (::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
    ::close(out[0]);
    REQUIRE_MESSAGE(line.rfind("PORT ", 0) == 0, "http_server.py did not start: '" << line << "'");
    port_ = std::atoi(line.c_str() + 5);
  }
  fs::path root_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int port_ = 0;
};

struct Cache {
  fs::path dir = make_temp_dir("cache");
  DownloadOptions opts;
  Cache() {
    opts.cache_dir = dir.string();
    opts.progress = false;
    opts.connect_timeout_s = 5;
    opts.idle_timeout_s = 5;
  }
  ~Cache() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::vector<std::string> files() const { return list_dir(dir); }
};

/// Runs fetch and returns the ckpt::Error it must throw.
ckpt::Error fetch_error(const std::string& url, const DownloadOptions& opts) {
  try {
    fetch(url, opts);
  } catch (const ckpt::Error& e) {
    return e;
  }
  FAIL("fetch(" << url << ") did not throw");
  return ckpt::Error(ErrorCode::internal, "unreachable");
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("is_url") {
  using ckpt::train::is_url;
  CHECK(is_url("http://host/x.pt"));
  CHECK(is_url("HTTPS://host/x.pt"));
  CHECK(is_url("file:///etc/passwd"));
  CHECK(is_url("ftp://h/x"));
  CHECK(is_url("git+ssh://h/x"));
  CHECK_FALSE(is_url("checkpoints/x.pt"));
  CHECK_FALSE(is_url("/abs/path/x.pt"));
  CHECK_FALSE(is_url("://nohost"));
  CHECK_FALSE(is_url("1http://x"));
  CHECK_FALSE(is_url("dir with://colon"));
  CHECK_FALSE(is_url(""));
}

TEST_CASE("refuses schemes other than http and https, without touching the cache") {
  Cache c;
  for (const char* url : {"file:///etc/passwd", "ftp://127.0.0.1/x.pt", "gopher://127.0.0.1/x", "x.pt", "",
                          "http:///nohost.pt", "https://"}) {
    CAPTURE(url);
    auto e = fetch_error(url, c.opts);
    CHECK(e.code() == ErrorCode::invalid_argument);
  }
  CHECK(c.files().empty());
}

TEST_CASE("downloads a file; the bytes are equal; no temp file is left") {
  auto& s = Server::get();
  std::string data = s.add_file("model.pt", 300000);
  Cache c;
  std::string path = fetch(s.url("/files/model.pt"), c.opts);
  CHECK(read_file(path) == data);
  CHECK(fs::path(path).parent_path() == c.dir);
  CHECK(contains(fs::path(path).filename().string(), "-model.pt"));
  CHECK(path == ckpt::train::cache_path(c.dir.string(), s.url("/files/model.pt")));
  auto files = c.files();
  REQUIRE(files.size() == 2);  // the file and its .url record, nothing else
  CHECK(files[1] == files[0] + ".url");
}

TEST_CASE("a second fetch reuses the cached file without a request") {
  auto& s = Server::get();
  std::string data = s.add_file("reuse.pt", 5000);
  Cache c;
  std::string url = s.url("/files/reuse.pt");
  std::string a = fetch(url, c.opts);
  std::string b = fetch(url, c.opts);
  CHECK(a == b);
  CHECK(s.hits("reuse.pt") == 1);
  // a cached file whose size disagrees with its record is fetched again
  std::ofstream(a, std::ios::binary | std::ios::app) << "garbage";
  CHECK(read_file(fetch(url, c.opts)) == data);
  CHECK(s.hits("reuse.pt") == 2);
  // a different query string is another URL, another cache entry
  std::string d = fetch(url + "?v=2", c.opts);
  CHECK(d != a);
  CHECK(s.hits("reuse.pt") == 3);
}

TEST_CASE("HTTP errors name the URL and the status; nothing is cached") {
  auto& s = Server::get();
  Cache c;
  for (int status : {404, 403, 500}) {
    std::string url = s.url("/status/" + std::to_string(status));
    auto e = fetch_error(url, c.opts);
    CHECK(e.code() == ErrorCode::io_error);
    CHECK(contains(e.what(), url));
    CHECK(contains(e.what(), "HTTP " + std::to_string(status)));
  }
  CHECK(c.files().empty());
}

TEST_CASE("redirects are followed, but only so far and only to http(s)") {
  auto& s = Server::get();
  std::string data = s.add_file("moved.pt", 1000);
  Cache c;
  CHECK(read_file(fetch(s.url("/redirect/3/moved.pt"), c.opts)) == data);
  auto loop = fetch_error(s.url("/loop"), c.opts);
  CHECK(loop.code() == ErrorCode::io_error);
  CHECK(contains(loop.detail(), "redirect"));
  auto to_file = fetch_error(s.url("/to?url=file:///etc/passwd"), c.opts);
  CHECK(to_file.code() == ErrorCode::io_error);
  CHECK(c.files().size() == 2);  // only moved.pt and its record
}

TEST_CASE("the size limit holds for Content-Length and while streaming") {
  auto& s = Server::get();
  s.add_file("big.pt", 200000);
  Cache c;
  c.opts.max_bytes = 100000;
  auto from_header = fetch_error(s.url("/huge"), c.opts);
  CHECK(from_header.code() == ErrorCode::limit_exceeded);
  auto declared = fetch_error(s.url("/files/big.pt"), c.opts);
  CHECK(declared.code() == ErrorCode::limit_exceeded);
  auto t0 = std::chrono::steady_clock::now();
  auto streamed = fetch_error(s.url("/endless"), c.opts);  // no Content-Length at all
  CHECK(streamed.code() == ErrorCode::limit_exceeded);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(c.files().empty());
}

TEST_CASE("a body cut short leaves neither the final file nor a temp file") {
  auto& s = Server::get();
  s.add_file("cut.pt", 100000);
  Cache c;
  auto e = fetch_error(s.url("/cut/cut.pt"), c.opts);
  CHECK(e.code() == ErrorCode::io_error);
  CHECK(contains(e.detail(), "Content-Length"));
  CHECK(c.files().empty());
}

TEST_CASE("a stalled body times out after idle_timeout_s") {
  auto& s = Server::get();
  s.add_file("stall.pt", 100000);
  Cache c;
  c.opts.idle_timeout_s = 1;
  auto t0 = std::chrono::steady_clock::now();
  auto e = fetch_error(s.url("/stall/stall.pt"), c.opts);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(e.code() == ErrorCode::io_error);
  CHECK(contains(e.detail(), "no data for 1 s"));
  CHECK(took < std::chrono::seconds(4));
  CHECK(c.files().empty());
}

TEST_CASE("connection refused is an io_error naming the URL") {
  Cache c;  // port 1 (tcpmux) is privileged and unused here
  auto e = fetch_error("http://127.0.0.1:1/x.pt", c.opts);
  CHECK(e.code() == ErrorCode::io_error);
  CHECK(contains(e.what(), "127.0.0.1:1/x.pt"));
}

TEST_CASE("default cache folder: $XDG_CACHE_HOME/ckpt, else ~/.cache/ckpt; credentials stay out of messages") {
  auto& s = Server::get();
  s.add_file("xdg.pt", 10);
  fs::path xdg = make_temp_dir("xdg");
  std::string old_xdg = env_or("XDG_CACHE_HOME", ""), old_home = env_or("HOME", "");
  ::setenv("XDG_CACHE_HOME", xdg.c_str(), 1);
  DownloadOptions o;
  o.progress = false;
  CHECK(ckpt::train::cache_dir(o) == (xdg / "ckpt").string());
  std::string path = fetch(s.url("/files/xdg.pt"), o);
  CHECK(fs::path(path).parent_path() == xdg / "ckpt");
  CHECK((fs::status(xdg / "ckpt").permissions() & fs::perms::others_all) == fs::perms::none);
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", xdg.c_str(), 1);
  CHECK(ckpt::train::cache_dir(o) == (xdg / ".cache" / "ckpt").string());
  std::string url = s.url("/status/404");
  url.insert(7, "user:secret@");
  auto e = fetch_error(url, o);
  CHECK_FALSE(contains(e.what(), "secret"));
  if (old_xdg.empty()) ::unsetenv("XDG_CACHE_HOME"); else ::setenv("XDG_CACHE_HOME", old_xdg.c_str(), 1);
  ::setenv("HOME", old_home.c_str(), 1);
  fs::remove_all(xdg);
}

TEST_CASE("cache names: hash + sanitised basename, never hidden or escaping the folder") {
  using ckpt::train::cache_path;
  std::string a = cache_path("/c", "http://h/a/b/model.pt?token=1#x");
  CHECK(a.rfind("/c/", 0) == 0);
  CHECK(contains(a, "-model.pt"));
  CHECK_FALSE(contains(a, "token"));
  CHECK(cache_path("/c", "http://h/a/b/model.pt?token=1") != cache_path("/c", "http://h/a/b/model.pt?token=2"));
  std::string evil = cache_path("/c", "http://h/..%2f..%2fetc%2fpasswd");
  CHECK(fs::path(evil).parent_path() == "/c");
  CHECK(fs::path(evil).filename().string().find('/') == std::string::npos);
  CHECK(contains(cache_path("/c", "http://h/"), "-download"));
  CHECK(contains(cache_path("/c", "http://h"), "-download"));
  CHECK(fs::path(cache_path("/c", "http://h/...")).filename().string()[0] != '.');
}

TEST_CASE("an HTML page is downloaded as is; libckpt's open then reports html_page") {
  auto& s = Server::get();
  Cache c;
  std::string path = fetch(s.url("/html"), c.opts);
  CHECK(contains(read_file(path), "<!DOCTYPE html>"));
  try {
    ckpt::Checkpoint::open(path);
    FAIL("an HTML page opened as a checkpoint");
  } catch (const ckpt::Error& e) {
    CHECK(e.code() == ErrorCode::html_page);
  }
}
