// Atomic file writes and the drivers' output helpers (core/io.hpp,
// core/output.hpp): POSIX calls kept out of the headers.
#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/output.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>
#include <ostream>
#include <random>
#include <streambuf>
#include <string>
#include <system_error>

namespace hfisher {
namespace io {

namespace {

std::string reason(int err) { return std::error_code(err, std::generic_category()).message(); }

// 16 hex digits that differ between processes, threads and calls
std::string random_suffix() {
  static std::atomic<unsigned long long> counter{0};
  std::random_device rd;
  const unsigned long long a = (static_cast<unsigned long long>(rd()) << 32) ^ rd();
  const unsigned long long t =
      static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  unsigned long long x = a ^ (t * 0x9E3779B97F4A7C15ULL) ^ (static_cast<unsigned long long>(::getpid()) << 17) ^
                         (counter.fetch_add(1) * 0xBF58476D1CE4E5B9ULL);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", x);
  return buf;
}

// Creates `<base>.tmp.<random>` exclusively (never through a symlink);
// returns the descriptor and sets `name`.
int create_unique(const std::string& base, std::string& name, const char* where) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    name = base + ".tmp." + random_suffix();
    const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) throw Error(detail::concat(where, ": cannot create ", name, ": ", reason(errno)));
  }
  throw Error(detail::concat(where, ": cannot create a temporary file next to ", base, ": 64 names taken"));
}

struct Crc32cTable {
  std::uint32_t t[256];
  Crc32cTable() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
  }
};
const Crc32cTable crc_table;

constexpr char seal_tag[8] = {'H', 'F', 'S', 'E', 'A', 'L', '0', '1'};
constexpr std::size_t seal_bytes = 20;  // tag, uint64 length, uint32 CRC-32C

// An output buffer over a descriptor that remembers the first write error
// and, for a sealed file, the length and CRC-32C of what passed through.
class FdBuf : public std::streambuf {
 public:
  explicit FdBuf(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof buf_); }
  int error() const { return err_; }
  bool summing = false;
  std::uint32_t crc = 0;
  unsigned long long count = 0;
  bool drain() {
    const char* p = pbase();
    std::size_t left = std::size_t(pptr() - pbase());
    if (summing) {
      crc = crc32c(p, left, crc);
      count += left;
    }
    while (left > 0 && err_ == 0) {
      const ssize_t w = ::write(fd_, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        break;
      }
      p += w;
      left -= std::size_t(w);
    }
    setp(buf_, buf_ + sizeof buf_);
    return err_ == 0;
  }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  int fd_;
  int err_ = 0;
  char buf_[1 << 16];
};

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t bytes, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < bytes; ++i) crc = crc_table.t[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

struct AtomicFile::Impl {
  std::string path, tmp;
  const char* where;
  int fd = -1;
  FdBuf buf;
  std::ostream os;
  bool done = false;
  bool sealed = false;
  Impl(const std::string& p, const char* w, int f, std::string t)
      : path(p), tmp(std::move(t)), where(w), fd(f), buf(f), os(&buf) {}
};

AtomicFile::AtomicFile(const std::string& path, const char* where, bool sealed) : impl_(nullptr) {
  detail::require(!path.empty(), where, "empty file name");
  std::string tmp;
  const int fd = create_unique(path, tmp, where);
  impl_ = new Impl(path, where, fd, tmp);
  impl_->sealed = sealed;
  impl_->buf.summing = sealed;
}

AtomicFile::~AtomicFile() {
  if (!impl_->done) {
    if (impl_->fd >= 0) ::close(impl_->fd);
    ::unlink(impl_->tmp.c_str());
  }
  delete impl_;
}

std::ostream& AtomicFile::stream() { return impl_->os; }

const std::string& AtomicFile::temporary() const { return impl_->tmp; }

void AtomicFile::commit() {
  Impl& f = *impl_;
  detail::require(!f.done, f.where, "file ", f.path, " was already committed");
  f.os.flush();
  auto fail = [&](const char* what, int err) {
    ::close(f.fd);
    f.fd = -1;
    ::unlink(f.tmp.c_str());
    f.done = true;
    throw Error(detail::concat(f.where, ": ", what, " ", f.tmp, " (for ", f.path, ") failed: ", reason(err)));
  };
  if (!f.buf.drain() || !f.os) fail("write to", f.buf.error() ? f.buf.error() : EIO);
  if (f.sealed) {
    f.buf.summing = false;
    unsigned char t[seal_bytes];
    std::memcpy(t, seal_tag, 8);
    for (int b = 0; b < 8; ++b) t[8 + b] = static_cast<unsigned char>(f.buf.count >> (8 * b));
    for (int b = 0; b < 4; ++b) t[16 + b] = static_cast<unsigned char>(f.buf.crc >> (8 * b));
    f.os.write(reinterpret_cast<const char*>(t), seal_bytes);
    f.os.flush();
    if (!f.buf.drain() || !f.os) fail("write to", f.buf.error() ? f.buf.error() : EIO);
  }
  if (::fsync(f.fd) != 0) fail("fsync of", errno);
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) fail("close of", errno);
  if (::rename(f.tmp.c_str(), f.path.c_str()) != 0) {
    const int err = errno;
    ::unlink(f.tmp.c_str());
    f.done = true;
    throw Error(detail::concat(f.where, ": cannot rename ", f.tmp, " to ", f.path, ": ", reason(err)));
  }
  f.done = true;
}

namespace {

// An input buffer over [0, limit) of a descriptor, with seeking inside it.
class BoundedBuf : public std::streambuf {
 public:
  BoundedBuf(int fd, unsigned long long limit) : fd_(fd), limit_(limit) { setg(buf_, buf_, buf_); }
  unsigned long long position() const { return pos_ - static_cast<unsigned long long>(egptr() - gptr()); }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    if (pos_ >= limit_) return traits_type::eof();
    const std::size_t want = std::size_t(std::min<unsigned long long>(sizeof buf_, limit_ - pos_));
    ssize_t got;
    do {
      got = ::pread(fd_, buf_, want, off_t(pos_));
    } while (got < 0 && errno == EINTR);
    if (got <= 0) return traits_type::eof();
    pos_ += static_cast<unsigned long long>(got);
    setg(buf_, buf_, buf_ + got);
    return traits_type::to_int_type(*gptr());
  }
  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
    long long base = dir == std::ios_base::beg   ? 0LL
                     : dir == std::ios_base::end ? static_cast<long long>(limit_)
                                                 : static_cast<long long>(position());
    const long long to = base + static_cast<long long>(off);
    if (to < 0 || static_cast<unsigned long long>(to) > limit_) return pos_type(off_type(-1));
    pos_ = static_cast<unsigned long long>(to);
    setg(buf_, buf_, buf_);
    return pos_type(off_type(to));
  }
  pos_type seekpos(pos_type p, std::ios_base::openmode m) override {
    return seekoff(off_type(p), std::ios_base::beg, m);
  }

 private:
  int fd_;
  unsigned long long limit_, pos_ = 0;
  char buf_[1 << 16];
};

}  // namespace

struct SealedFile::Impl {
  std::string path;
  const char* where;
  int fd = -1;
  bool sealed = false;
  std::unique_ptr<BoundedBuf> buf;
  std::unique_ptr<std::istream> is;
};

SealedFile::SealedFile(const std::string& path, const char* where) : impl_(new Impl) {
  Impl& f = *impl_;
  f.path = path;
  f.where = where;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    const int err = errno;
    delete impl_;
    throw Error(detail::concat(where, ": cannot open ", path, ": ", reason(err)));
  }
  try {
    struct stat st {};
    detail::require(::fstat(f.fd, &st) == 0 && S_ISREG(st.st_mode), where, path, " is not a regular file");
    const auto size = static_cast<unsigned long long>(st.st_size);
    unsigned long long limit = size;
    unsigned char t[seal_bytes] = {};
    if (size >= seal_bytes && ::pread(f.fd, t, seal_bytes, off_t(size - seal_bytes)) == ssize_t(seal_bytes) &&
        std::memcmp(t, seal_tag, 8) == 0) {
      unsigned long long len = 0;
      std::uint32_t want = 0;
      for (int b = 0; b < 8; ++b) len |= static_cast<unsigned long long>(t[8 + b]) << (8 * b);
      for (int b = 0; b < 4; ++b) want |= static_cast<std::uint32_t>(t[16 + b]) << (8 * b);
      detail::require(len == size - seal_bytes, where, path, ": checksum trailer says ", len,
                      " bytes of payload, the file holds ", size - seal_bytes, " (truncated or corrupt)");
      std::vector<char> chunk(1 << 20);
      std::uint32_t crc = 0;
      for (unsigned long long at = 0; at < len;) {
        const std::size_t n = std::size_t(std::min<unsigned long long>(chunk.size(), len - at));
        const ssize_t got = ::pread(f.fd, chunk.data(), n, off_t(at));
        detail::require(got > 0, where, "read of ", path, " failed: ", reason(got < 0 ? errno : EIO));
        crc = crc32c(chunk.data(), std::size_t(got), crc);
        at += static_cast<unsigned long long>(got);
      }
      detail::require(crc == want, where, path, ": checksum mismatch (CRC-32C stored ", want, ", computed ", crc,
                      "): the file is corrupt");
      limit = len;
      f.sealed = true;
    }
    f.buf = std::make_unique<BoundedBuf>(f.fd, limit);
    f.is = std::make_unique<std::istream>(f.buf.get());
  } catch (...) {
    ::close(f.fd);
    delete impl_;
    throw;
  }
}

SealedFile::~SealedFile() {
  impl_->is.reset();
  impl_->buf.reset();
  ::close(impl_->fd);
  delete impl_;
}

std::istream& SealedFile::stream() { return *impl_->is; }

bool SealedFile::sealed() const { return impl_->sealed; }

void SealedFile::expect_end() const {
  const Impl& f = *impl_;
  detail::require(bool(*f.is) && f.is->peek() == std::char_traits<char>::eof(), f.where, f.path,
                  bool(*f.is) ? ": trailing bytes after the end of the record" : ": file is truncated");
}

std::string prepare_output_dir(const std::string& dir, const char* where) {
  namespace fs = std::filesystem;
  detail::require(!dir.empty(), where, "the output directory is empty (give a directory such as results/run1)");
  std::error_code ec;
  const fs::path abs = fs::absolute(fs::path(dir), ec);
  detail::require(!ec, where, "output directory ", dir, ": ", ec.message());
  const fs::path canon = fs::weakly_canonical(abs, ec);
  detail::require(!ec, where, "output directory ", dir, ": ", ec.message());
  detail::require(canon != canon.root_path(), where, "refusing the file-system root ", canon.string(),
                  " as output directory");
  fs::create_directories(canon, ec);
  detail::require(!ec, where, "cannot create output directory ", dir, ": ", ec.message());
  detail::require(fs::is_directory(canon, ec), where, "output path ", dir, " exists and is not a directory");
  std::string probe;
  const int fd = create_unique((canon / ".hfisher-write-test").string(), probe, where);
  ::close(fd);
  ::unlink(probe.c_str());
  return dir;
}

bool run_gnuplot(const std::string& dir, const std::string& script) {
  // everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls
  const char* argv[] = {"gnuplot", script.c_str(), nullptr};
  const char* cdir = dir.c_str();
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    if (::chdir(cdir) != 0) ::_exit(126);
    ::execvp("gnuplot", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", unsigned(c));
          out += b;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace io
}  // namespace hfisher
