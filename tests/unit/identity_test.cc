// Whom cryo acts for, what a process or an image holds, which files a
// restore for a user opens, and the service's units and protocol helpers.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/identity.h"
#include "config/settings.h"
#include "job/images.h"
#include "job/reopened.h"
#include "service/service.h"

namespace cryo {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(IdentityTest, TextRoundTrips) {
  Identity a{1001, 1002, {1002, 27, 100}};
  auto b = Identity::parse(a.text());
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->uid, 1001u);
  EXPECT_EQ(b->gid, 1002u);
  EXPECT_EQ(b->groups, (std::vector<gid_t>{1002, 27, 100}));
  EXPECT_TRUE(Identity::parse("5:6:"));
  for (const char* bad : {"", "1", "1:2", "x:2:", "1:2:3,x", "1:2:,", "-1:2:"}) EXPECT_FALSE(Identity::parse(bad)) << bad;
}

const char* kStatus =
    "Name:\tsleep\nUmask:\t0022\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\n"
    "Groups:\t1001 27 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
    "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

TEST(IdentityTest, AProcessHoldingOnlyHersIsHers) {
  auto p = parse_process_status(kStatus);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(privilege_beyond(*p, {1001, 1001, {1001, 27}}), "");
  EXPECT_EQ(privilege_beyond(*p, {1001, 1001, {1001}}), "it is in group 27");
}

TEST(IdentityTest, EachWayOfHoldingMoreIsNamed) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string s = kStatus;
    s.replace(s.find(from), from.size(), to);
    auto p = parse_process_status(s);
    EXPECT_TRUE(p) << s;
    return p ? privilege_beyond(*p, {1001, 1001, {1001, 27}}) : std::string("?");
  };
  EXPECT_EQ(with("Uid:\t1001\t1001", "Uid:\t1001\t0"), "its effective uid is 0");
  EXPECT_EQ(with("1001\t1001\nGid", "1001\t0\nGid"), "its file-system uid is 0");
  EXPECT_EQ(with("Gid:\t1001\t1001\t1001", "Gid:\t1001\t1001\t0"), "its saved gid is 0");
  EXPECT_EQ(with("CapEff:\t0000000000000000", "CapEff:\t0000000000200000"),
            "it holds capabilities (effective set 200000)");
  EXPECT_EQ(with("CapAmb:\t0000000000000000", "CapAmb:\t0000000000000001"), "it holds capabilities (ambient set 1)");
  EXPECT_EQ(with("CapInh:\t0000000000000000", "CapInh:\t0000000000000400"),
            "it holds capabilities (inheritable set 400)");
  // A status without its ids or capabilities is not read as "nothing more".
  EXPECT_FALSE(parse_process_status("Name:\tx\nUid:\t1\t1\t1\t1\n"));
  EXPECT_FALSE(parse_process_status("Uid:\t1\t1\t1\nGid:\t1\t1\t1\t1\n"));
}

// A core image CRIU 4.2 wrote of a process of root's (tests/unit/data).
TEST(ImagesTest, ACoreImageSaysWhatItsThreadHolds) {
  std::string image = slurp(std::string(CRYO_SOURCE_DIR) + "/tests/unit/data/core-root-sleep.img");
  auto c = job::image_creds(image, "the image");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->uid[0], 0u);
  EXPECT_EQ(c->uid[1], 0u);
  EXPECT_NE(c->cap_eff, 0u);
  EXPECT_EQ(privilege_beyond(*c, {1001, 1001, {}}), "its real uid is 0");
  // Damage is an error, never an empty set of credentials.
  EXPECT_FALSE(job::image_creds(image.substr(0, 10), "x"));
  std::string bad = image;
  bad[0] ^= 1;
  EXPECT_FALSE(job::image_creds(bad, "x"));
  std::string cut = image.substr(0, image.size() - 40);
  EXPECT_FALSE(job::image_creds(cut, "x"));
}

// The files and mounts of a checkpoint CRIU 4.2 wrote of `sh -c 'exec
// 3</etc/hostname; exec sleep 600'` in its own mount namespace
// (tests/unit/data).
TEST(ImagesTest, TheImagesSayWhichFilesCriuOpensAgain) {
  job::ImageFiles f;
  std::string data = std::string(CRYO_SOURCE_DIR) + "/tests/unit/data/";
  ASSERT_TRUE(job::add_image_files(slurp(data + "files-sleep.img"), "files.img", "0001", f));
  ASSERT_TRUE(job::add_image_files(slurp(data + "mountpoints-sleep.img"), "mountpoints-11.img", "0001", f));
  ASSERT_EQ(f.files.size(), 23u);
  const job::ImageFile* hostname = nullptr;
  for (const auto& e : f.files)
    if (e.path == "/etc/hostname") hostname = &e;
  ASSERT_NE(hostname, nullptr);
  EXPECT_EQ(hostname->flags & O_ACCMODE, static_cast<uint32_t>(O_RDONLY));
  EXPECT_EQ(hostname->mnt_id, 66);
  bool dev = false, shm = false;
  for (const auto& m : f.mounts) {
    if (m.point == "/dev") dev = m.ext_key == "/dev";
    if (m.point == "/dev/shm") shm = m.ext_key.empty();
  }
  EXPECT_TRUE(dev && shm);
  EXPECT_TRUE(f.remapped.empty());
  // Other images add nothing; damage is an error.
  EXPECT_TRUE(job::add_image_files("anything", "pstree.img", "0001", f));
  std::string cut = slurp(data + "files-sleep.img");
  EXPECT_FALSE(job::add_image_files(cut.substr(0, cut.size() - 5), "files.img", "0001", f));
}

// The Unix sockets of checkpoints CRIU 4.2 wrote of tests/progs/unixsock
// listening at /tmp/cryo-test.sock, and at the abstract @cryo-abstract.
TEST(ImagesTest, TheImagesSayWhichSocketsAreBoundToAPath) {
  std::string data = std::string(CRYO_SOURCE_DIR) + "/tests/unit/data/";
  job::ImageFiles bound, abstract;
  ASSERT_TRUE(job::add_image_files(slurp(data + "files-unixsock.img"), "files.img", "0001", bound));
  ASSERT_TRUE(job::add_image_files(slurp(data + "files-abstract.img"), "files.img", "0001", abstract));
  // The listening socket and the one it accepted carry the name.
  ASSERT_FALSE(bound.socket_paths.empty());
  for (const auto& p : bound.socket_paths) EXPECT_EQ(p, "/tmp/cryo-test.sock");
  EXPECT_TRUE(abstract.socket_paths.empty());
}

namespace fs = std::filesystem;

// Where each file lies on the node: under the root given to CRIU, under
// the path given for an external mount's key, or nowhere (a mount of the
// job's own, made from the images).
TEST(ReopenedTest, EachFileIsOpenedWhereTheRestoreBindsItsMount) {
  fs::path root = fs::temp_directory_path() / ("cryo-reopened-" + std::to_string(::getpid()));
  fs::create_directories(root / "etc");
  fs::create_directories(root / "node-data");
  std::ofstream(root / "etc/motd") << "root\n";
  std::ofstream(root / "node-data/x") << "data\n";
  // A named pipe the job only wrote to, whose reader is not here.
  ASSERT_EQ(::mkfifo((root / "etc/pipe").c_str(), 0600), 0);
  job::ImageFiles images;
  images.mounts = {{10, 9, "/", ""}, {11, 10, "/data", "/data"}, {12, 10, "/dev/shm", ""}};
  images.files = {{1, O_RDONLY, "/etc/motd", 10, false},
                  {2, O_RDONLY, "/data/x", 11, false},
                  {3, O_RDWR, "/dev/shm/seg", 12, false},
                  {4, O_RDONLY, "/gone", 10, false},
                  {6, O_WRONLY, "/etc/pipe", 10, false}};
  images.remapped = {4};
  criu::RestoreRequest req;
  req.root = root.string();
  req.external = {"mnt[/data]:" + (root / "node-data").string()};
  auto held = job::HeldFiles::open_as_owner(images, req, "0001");
  ASSERT_TRUE(held) << held.error().message;
  std::set<std::string> paths;
  for (const auto& [inode, path] : held->inodes()) paths.insert(path);
  EXPECT_EQ(paths, (std::set<std::string>{"/etc/motd", "/data/x", "/etc/pipe"}));
  // A Unix socket bound to a path on the node is refused; on a mount of
  // the job's own it is not the node's.
  images.socket_paths = {"/dev/shm/app.sock"};
  EXPECT_TRUE(job::HeldFiles::open_as_owner(images, req, "0001"));
  images.socket_paths = {"/data/app.sock"};
  auto socket = job::HeldFiles::open_as_owner(images, req, "0001");
  ASSERT_FALSE(socket);
  EXPECT_NE(socket.error().message.find("a Unix socket bound at '/data/app.sock'"), std::string::npos)
      << socket.error().message;
  images.socket_paths.clear();
  // A file that is not there is refused, naming the job's path.
  images.files.push_back({5, O_RDONLY, "/etc/missing", 10, false});
  auto refused = job::HeldFiles::open_as_owner(images, req, "0001");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("the job had '/etc/missing' open"), std::string::npos)
      << refused.error().message;
  fs::remove_all(root);
}

// A restored tree holding a file that was not opened for its owner is
// caught, whether it holds it open (a file, a named pipe) or as its
// working directory.
TEST(ReopenedTest, AFileTheOwnerDidNotOpenIsCaught) {
  fs::path dir = fs::temp_directory_path() / ("cryo-held-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "f") << "x\n";
  ASSERT_EQ(::mkfifo((dir / "p").c_str(), 0600), 0);
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  if (child == 0) {
    int fd = ::open((dir / "f").c_str(), O_RDONLY);
    int pipe_fd = ::open((dir / "p").c_str(), O_RDWR);
    if (fd < 0 || pipe_fd < 0 || ::chdir(dir.c_str()) < 0) ::_exit(1);
    (void)::write(go[1], "r", 1);
    for (;;) ::pause();  // until the parent kills it
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{child};  // also when an assertion ends the test
  char c;
  ASSERT_EQ(::read(go[0], &c, 1), 1);
  struct stat f {}, p {}, d {};
  ASSERT_EQ(::stat((dir / "f").c_str(), &f), 0);
  ASSERT_EQ(::stat((dir / "p").c_str(), &p), 0);
  ASSERT_EQ(::stat(dir.c_str(), &d), 0);
  // Everything the child holds, as a restore would have opened it for her.
  std::map<job::Inode, std::string> held;
  std::string proc = "/proc/" + std::to_string(child);
  std::vector<std::string> links = {proc + "/exe", proc + "/cwd", proc + "/root"};
  for (const char* sub : {"/fd", "/map_files"})
    for (const auto& e : fs::directory_iterator(proc + sub)) links.push_back(e.path().string());
  for (const auto& l : links) {
    struct stat s {};
    if (::stat(l.c_str(), &s) == 0) held[{s.st_dev, s.st_ino}] = l;
  }
  auto st = job::check_held(child, held, {}, "0001");
  EXPECT_TRUE(st) << st.error().message;
  for (const auto& [missing, path] : {std::pair{job::Inode{f.st_dev, f.st_ino}, (dir / "f").string()},
                                      std::pair{job::Inode{p.st_dev, p.st_ino}, (dir / "p").string()},
                                      std::pair{job::Inode{d.st_dev, d.st_ino}, dir.string()}}) {
    auto without = held;
    without.erase(missing);
    st = job::check_held(child, without, {}, "0001");
    ASSERT_FALSE(st) << path;
    EXPECT_NE(st.error().message.find("CRIU opened '" + path + "'"), std::string::npos) << st.error().message;
    // On a device of the job's own, it is not the node's file.
    EXPECT_TRUE(job::check_held(child, without, {missing.first}, "0001")) << path;
  }
  fs::remove_all(dir);
}

TEST(ServiceTest, TheVerbIsFoundPastGlobalOptions) {
  EXPECT_EQ(service::verb_of({"run", "--name", "x", "--", "restore"}), "run");
  EXPECT_EQ(service::verb_of({"--store", "/s", "restore", "x"}), "restore");
  EXPECT_EQ(service::verb_of({"--criu=/bin/true", "run"}), "run");
  EXPECT_EQ(service::verb_of({"--", "run"}), "");
  EXPECT_EQ(service::verb_of({"--help", "run"}), "run");  // the flags that take no value
  EXPECT_TRUE(service::served_verb("run"));
  EXPECT_TRUE(service::served_verb("restore"));
  EXPECT_FALSE(service::served_verb("rm"));
}

// The units sites install name the cryod that is installed and the socket
// cryo connects to by default.
TEST(ServiceTest, TheSystemdUnitsNameTheServiceAndItsSocket) {
  std::string service = slurp(std::string(CRYO_BINARY_DIR) + "/dist/cryod.service");
  std::string socket = slurp(std::string(CRYO_BINARY_DIR) + "/dist/cryod.socket");
  EXPECT_NE(service.find("\nExecStart=" + std::string(CRYO_INSTALL_SBINDIR) + "/cryod\n"), std::string::npos) << service;
  EXPECT_NE(socket.find("\nListenSequentialPacket=" + config::Settings{}.service_socket + "\n"), std::string::npos)
      << socket;
  EXPECT_NE(socket.find("\nSocketMode=0666\n"), std::string::npos) << socket;
}

}  // namespace
}  // namespace cryo
