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
#include <filesystem>
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

// An output buffer over a descriptor that remembers the first write error.
class FdBuf : public std::streambuf {
 public:
  explicit FdBuf(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof buf_); }
  int error() const { return err_; }
  bool drain() {
    const char* p = pbase();
    std::size_t left = std::size_t(pptr() - pbase());
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

struct AtomicFile::Impl {
  std::string path, tmp;
  const char* where;
  int fd = -1;
  FdBuf buf;
  std::ostream os;
  bool done = false;
  Impl(const std::string& p, const char* w, int f, std::string t)
      : path(p), tmp(std::move(t)), where(w), fd(f), buf(f), os(&buf) {}
};

AtomicFile::AtomicFile(const std::string& path, const char* where) : impl_(nullptr) {
  detail::require(!path.empty(), where, "empty file name");
  std::string tmp;
  const int fd = create_unique(path, tmp, where);
  impl_ = new Impl(path, where, fd, tmp);
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

}  // namespace io
}  // namespace hfisher
