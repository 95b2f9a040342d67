// Transactional writes: fault injection through the FsOps seam.
#include <doctest/doctest.h>

#include <cerrno>
#include <sys/stat.h>
#include <ckpt/ckpt.hpp>

#include "test_util.hpp"

using namespace ckpt;

namespace {

int g_write_calls = 0, g_fail_write_at = -1, g_fsync_calls = 0, g_fail_fsync_at = -1, g_fail_errno = 0;
bool g_fail_rename = false;

ssize_t faulty_write(int fd, const void* b, size_t n) {
  if (++g_write_calls == g_fail_write_at) {
    errno = g_fail_errno;
    return -1;
  }
  return ::write(fd, b, n);
}
int faulty_fsync(int fd) {
  if (++g_fsync_calls == g_fail_fsync_at) {
    errno = g_fail_errno;
    return -1;
  }
  return ::fsync(fd);
}
int faulty_rename(const char* a, const char* b) {
  if (g_fail_rename) {
    errno = EXDEV;
    return -1;
  }
  return ::rename(a, b);
}

struct Faults {
  Faults() {
    g_write_calls = g_fsync_calls = 0;
    g_fail_write_at = g_fail_fsync_at = -1;
    g_fail_rename = false;
    detail::fs_ops().write = faulty_write;
    detail::fs_ops().fsync = faulty_fsync;
    detail::fs_ops().rename = faulty_rename;
  }
  ~Faults() { detail::reset_fs_ops(); }
};

Value* sample(Document& doc, size_t n) {
  Value* d = doc.dict();
  d->set("w", doc.tensor(Tensor::from_bytes(DType::uint8, {static_cast<int64_t>(n)}, std::vector<uint8_t>(n, 7))));
  return d;
}

/// Saves a first ck.pt (an n-byte tensor) into dir and returns its bytes.
std::vector<uint8_t> save_old_file(const testutil::TempDir& dir, Document& doc, size_t n) {
  save(dir / "ck.pt", *sample(doc, n), SaveOptions{{}, false});
  return testutil::read_file(dir / "ck.pt");
}

/// After a failed save: the old ck.pt byte for byte, and no temp file beside it.
void check_old_file_only(const testutil::TempDir& dir, const std::vector<uint8_t>& before) {
  CHECK(testutil::read_file(dir / "ck.pt") == before);
  CHECK(dir.list() == std::vector<std::string>{"ck.pt"});
}

}  // namespace

TEST_CASE("commit makes the file appear whole, with no temp left") {
  testutil::TempDir dir;
  {
    AtomicFile f(dir / "out.bin");
    f.write("hello", 5);
    CHECK(dir.list().size() == 1);  // only the temp file
    CHECK(dir.list()[0].rfind(".out.bin.tmp.", 0) == 0);
    f.commit();
  }
  CHECK(dir.list() == std::vector<std::string>{"out.bin"});
  CHECK(testutil::read_file(dir / "out.bin") == std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'});
}

TEST_CASE("an uncommitted file vanishes") {
  testutil::TempDir dir;
  {
    AtomicFile f(dir / "out.bin");
    f.write("x", 1);
  }
  CHECK(dir.list().empty());
}

TEST_CASE("ENOSPC during a save: clear error, old file intact, no temp") {
  testutil::TempDir dir;
  Document doc;
  const auto before = save_old_file(dir, doc, 100);
  for (int at = 1; at <= 3; ++at) {
    Faults faults;
    g_fail_write_at = at;
    g_fail_errno = ENOSPC;
    try {
      save(dir / "ck.pt", *sample(doc, 3 << 20), SaveOptions{{}, true});
      FAIL("expected no_space");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::no_space);
      CHECK(e.sys_errno() == ENOSPC);
      CHECK(std::string(e.what()).find("old file is untouched") != std::string::npos);
    }
    check_old_file_only(dir, before);
  }
}

TEST_CASE("EIO on fsync: no rename, no retry, temp removed") {
  testutil::TempDir dir;
  Document doc;
  const auto before = save_old_file(dir, doc, 10);
  Faults faults;
  g_fail_fsync_at = 1;
  g_fail_errno = EIO;
  try {
    save(dir / "ck.pt", *sample(doc, 20), SaveOptions{{}, true});
    FAIL("expected io_error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::io_error);
    CHECK(e.sys_errno() == EIO);
  }
  CHECK(g_fsync_calls == 1);  // never retried
  check_old_file_only(dir, before);
}

TEST_CASE("a failed rename leaves the old file and no temp") {
  testutil::TempDir dir;
  Document doc;
  const auto before = save_old_file(dir, doc, 10);
  Faults faults;
  g_fail_rename = true;
  CHECK_THROWS_AS(save(dir / "ck.pt", *sample(doc, 20), SaveOptions{{}, true}), Error);
  check_old_file_only(dir, before);
}

TEST_CASE("a failed folder fsync reports durability_uncertain with the new file in place") {
  testutil::TempDir dir;
  Document doc;
  Faults faults;
  g_fail_fsync_at = 2;  // 1: the file, 2: the folder
  g_fail_errno = EIO;
  try {
    save(dir / "ck.pt", *sample(doc, 20), SaveOptions{{}, true});
    FAIL("expected durability_uncertain");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::durability_uncertain);
  }
  CHECK(dir.list() == std::vector<std::string>{"ck.pt"});
  CHECK(Checkpoint::open(dir / "ck.pt").tensors().size() == 1);
}

TEST_CASE("a missing folder is an io_error naming the path") {
  try {
    AtomicFile f("/nonexistent-dir-ckpt/x.pt");
    FAIL("expected io_error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::io_error);
    CHECK(e.sys_errno() == ENOENT);
  }
}

TEST_CASE("replacing a file keeps its permission bits") {
  testutil::TempDir dir;
  testutil::write_file(dir / "ck.pt", std::string("old"));
  ::chmod((dir / "ck.pt").c_str(), 0600);
  {
    AtomicFile f(dir / "ck.pt");
    f.write("new", 3);
    f.commit();
  }
  struct stat st {};
  REQUIRE(::stat((dir / "ck.pt").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(testutil::read_file(dir / "ck.pt") == std::vector<uint8_t>{'n', 'e', 'w'});
}
