// atlas-online-reader: serves atlas.data.v1.OnlineFeatureService straight from the LMDB
// online store, in its own multi-threaded process.
//
// Why native: a Python gRPC server pays a fixed CPU cost per unary call and is GIL-bound to
// about one core (docs/experiments/online-reads.md); an online read is a few memory-mapped
// lookups and copies.
// The data service stays the only writer and the source of truth: it mirrors every feature
// group version into the LMDB sub-database "__catalog__" (key "name" = latest version,
// "name@v" = version v, value = serialized atlas.data.v1.FeatureGroup), and this process
// opens the environment read-only. The record format is the one of
// services/data/atlas_data/online/_codec.py; messages and error texts mirror reads.py so
// both endpoints answer alike.
//
// Usage: atlas-online-reader --lmdb DIR --address HOST:PORT [--tokens FILE]
//                            [--max-entities 1000] [--lock-memory MAX_BYTES]
//                            [--scheduler-slice-us US]
//                            [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
// It also serves atlas.data.v1.OnlineReaderService (GetReaderStats: per-call phase timings,
// fault and scheduling counters, whether the store is held in RAM) on the same port.
// FILE lists "<sha256 hex of a bearer token> <1 if it may read data, else 0>" per line; no
// FILE means auth is off. With --tls-cert/--tls-key it serves TLS only (the data service's
// server.tls files); --tls-client-ca also requires and verifies a client certificate (mTLS),
// as the Python server does. Prints "listening <port>" once serving; exits when its parent
// dies.

#include <dirent.h>
#include <lmdb.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <thread>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "atlas/data/v1/online_reader_service.grpc.pb.h"
#include "atlas/data/v1/online_service.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace pb = atlas::data::v1;

namespace {

constexpr uint8_t kFormatV1 = 0xA1;
constexpr size_t kHeaderSize = 40;
constexpr size_t kMaxStringKeyBytes = 500;  // atlas_data.records.MAX_STRING_KEY_BYTES
constexpr unsigned kMaxDbs = 4096 + 1;      // MAX_GROUPS of _lmdb.py, plus the catalog
constexpr unsigned kMaxReaders = 1024;
const char kCatalogDb[] = "__catalog__";
const char kMethod[] = "/atlas.data.v1.OnlineFeatureService/GetOnlineFeatures";

// ---------------------------------------------------------------- errors

// A gRPC status carrying google.rpc.Status + ErrorInfo, as atlas_core.rpc.status builds it.
grpc::Status Error(grpc::StatusCode code, const std::string& message, const std::string& reason) {
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("atlas");
  google::rpc::Status status;
  status.set_code(code);
  status.set_message(message);
  status.add_details()->PackFrom(info);
  return grpc::Status(code, message, status.SerializeAsString());
}

std::string Quoted(const std::string& s) { return "'" + s + "'"; }

// ---------------------------------------------------------------- catalog entries

// One feature group version as mirrored in the catalog, with lookups prepared.
struct Group {
  std::string raw;  // the catalog value it was parsed from (cache validation)
  pb::FeatureGroup msg;
  std::string name, store_key;
  bool int_keys = true;
  int64_t ttl_us = -1;  // -1: no TTL
  uint32_t widths[4] = {0, 0, 0, 0};  // float32, float64, int64, string
  std::unordered_map<std::string, int> slot_of;
};

// A projection onto requested features (LayoutSubset of schema.py); identity when empty.
struct Subset {
  pb::RecordLayout layout;
  bool identity = true;
  std::vector<uint32_t> index[4];  // per block: positions in the full-width block
  std::vector<int> slots;          // projected slot -> full slot (null masks)
};

std::unique_ptr<Group> ParseGroup(const std::string& raw) {
  auto g = std::make_unique<Group>();
  if (!g->msg.ParseFromString(raw)) return nullptr;
  g->raw = raw;
  g->name = g->msg.spec().name();
  g->store_key = g->name + "@" + std::to_string(g->msg.version());
  g->int_keys = g->msg.spec().entity_key_type() != pb::ENTITY_KEY_TYPE_STRING;
  if (g->msg.spec().has_ttl()) {
    const auto& ttl = g->msg.spec().ttl();
    g->ttl_us = ttl.seconds() * 1000000 + ttl.nanos() / 1000;
  }
  const auto& layout = g->msg.layout();
  g->widths[0] = layout.float32_width();
  g->widths[1] = layout.float64_width();
  g->widths[2] = layout.int64_width();
  g->widths[3] = layout.string_width();
  for (int i = 0; i < layout.slots_size(); ++i) g->slot_of[layout.slots(i).name()] = i;
  return g;
}

int BlockIndex(pb::ValueBlock block) {
  switch (block) {
    case pb::VALUE_BLOCK_FLOAT32: return 0;
    case pb::VALUE_BLOCK_FLOAT64: return 1;
    case pb::VALUE_BLOCK_INT64: return 2;
    default: return 3;
  }
}

grpc::Status MakeSubset(const Group& g, const google::protobuf::RepeatedPtrField<std::string>& names,
                        Subset* out) {
  const auto& full = g.msg.layout();
  out->layout = full;
  if (names.empty()) return grpc::Status::OK;
  std::unordered_set<std::string> seen;
  std::vector<int> picked;
  for (const auto& name : names) {
    if (!seen.insert(name).second)
      return Error(grpc::StatusCode::INVALID_ARGUMENT,
                   "feature_names: " + Quoted(name) + " is requested more than once",
                   "INVALID_ARGUMENT");
    auto it = g.slot_of.find(name);
    if (it == g.slot_of.end())
      return Error(grpc::StatusCode::NOT_FOUND,
                   "feature " + Quoted(name) + " not found in feature group " + Quoted(g.name),
                   "FEATURE_NOT_FOUND");
    picked.push_back(it->second);
  }
  bool identity = static_cast<int>(picked.size()) == full.slots_size();
  for (size_t i = 0; identity && i < picked.size(); ++i) identity = picked[i] == static_cast<int>(i);
  if (identity) return grpc::Status::OK;
  out->identity = false;
  out->slots = picked;
  out->layout.clear_slots();
  int32_t widths[4] = {0, 0, 0, 0};
  for (int s : picked) {
    const auto& slot = full.slots(s);
    int b = BlockIndex(slot.block());
    auto* copy = out->layout.add_slots();
    *copy = slot;
    copy->set_offset(widths[b]);
    widths[b] += slot.dims();
    for (int d = 0; d < slot.dims(); ++d) out->index[b].push_back(slot.offset() + d);
  }
  out->layout.set_float32_width(widths[0]);
  out->layout.set_float64_width(widths[1]);
  out->layout.set_int64_width(widths[2]);
  out->layout.set_string_width(widths[3]);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- LMDB

struct Txn {
  MDB_txn* txn = nullptr;
  ~Txn() { if (txn) mdb_txn_abort(txn); }
};

class Store {
 public:
  explicit Store(const std::string& path) : path_(path) {}

  int Open() {
    int rc = mdb_env_create(&env_);
    if (!rc) rc = mdb_env_set_maxdbs(env_, kMaxDbs);
    if (!rc) rc = mdb_env_set_maxreaders(env_, kMaxReaders);
    if (!rc) rc = mdb_env_open(env_, path_.c_str(), MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0644);
    return rc;
  }

  // Begins a read transaction, following the writer if it grew the map.
  int Begin(Txn* t) {
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &t->txn);
    if (rc == MDB_MAP_RESIZED) {
      std::unique_lock<std::mutex> lock(dbi_mu_);
      mdb_env_set_mapsize(env_, 0);
      rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &t->txn);
    }
    if (rc) t->txn = nullptr;
    return rc;
  }

  // The handle of a named sub-database, or false when it does not exist (yet). A handle
  // is usable only in transactions begun after it was opened.
  bool Dbi(const std::string& name, MDB_dbi* dbi, bool* opened = nullptr) {
    if (opened) *opened = false;
    {
      std::shared_lock<std::shared_mutex> lock(dbis_mu_);
      auto it = dbis_.find(name);
      if (it != dbis_.end()) { *dbi = it->second; return true; }
    }
    // mdb_dbi_open must not run in concurrent transactions of one process; a handle opened
    // in a committed transaction stays valid for the environment's life (sub-databases
    // are emptied, never dropped, by the writer).
    std::unique_lock<std::mutex> lock(dbi_mu_);
    Txn t;
    if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &t.txn)) { t.txn = nullptr; return false; }
    if (mdb_dbi_open(t.txn, name.c_str(), 0, dbi)) return false;
    if (mdb_txn_commit(t.txn)) { t.txn = nullptr; return false; }
    t.txn = nullptr;
    std::unique_lock<std::shared_mutex> wlock(dbis_mu_);
    dbis_[name] = *dbi;
    if (opened) *opened = true;
    return true;
  }

  const std::string& path() const { return path_; }

  // Keeps the store's pages in RAM, following the file as the writer grows it, so a read
  // never waits for the disk once the kernel has reclaimed "cold" pages (hosts that page out
  // idle memory make a p99 out of every such fault). The file's new tail is mapped through
  // mappings of our own (LMDB may remap its own on a resize) and locked (mlock): locked
  // page-cache pages stay resident for every mapping. When the kernel refuses the lock
  // (RLIMIT_MEMLOCK without CAP_IPC_LOCK: 8 MiB by default for non-root users), the pages are
  // read in and stay mapped instead -- page-out daemons that take only unmapped page cache
  // (DAMON's pageout scheme on these hosts) leave them, memory pressure may not. Beyond
  // max_bytes nothing more is held. LMDB's own map is prefaulted too, so the read path takes
  // no page faults at all. Status() reports which of these happened.
  void KeepResident(size_t max_bytes, const std::atomic<bool>& stop) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    // Unprivileged processes may raise their soft memory-lock limit up to the hard one.
    struct rlimit lim;
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = lim.rlim_max;
      setrlimit(RLIMIT_MEMLOCK, &lim);
    }
    {
      std::lock_guard<std::mutex> lock(residency_mu_);
      residency_.limit = max_bytes;
      residency_.mode = atlas::data::v1::RESIDENCY_MODE_LOCKED;
    }
    size_t held = 0, prefaulted = 0;
    void* lmdb_map = nullptr;
    bool lock_refused = false, over = false;
    int fd = -1;
    mdb_env_get_fd(env_, &fd);
    while (!stop.load()) {
      struct stat st;
      if (fd >= 0 && fstat(fd, &st) == 0) {
        const size_t size = static_cast<size_t>(st.st_size) / page * page;
        const size_t want = std::min(size, max_bytes / page * page);
        if (size > want && !over) {
          over = true;
          Note(atlas::data::v1::RESIDENCY_MODE_OVER_LIMIT,
               "the store (" + std::to_string(size) + " bytes) is over the limit of " +
                   std::to_string(max_bytes) + " bytes");
        }
        if (want > held) {
          void* chunk = mmap(nullptr, want - held, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(held));
          if (chunk == MAP_FAILED) {
            Note(atlas::data::v1::RESIDENCY_MODE_OVER_LIMIT,
                 std::string("mapping the store failed: ") + strerror(errno));
            break;
          }
          if (!lock_refused && mlock(chunk, want - held) != 0) {
            lock_refused = true;
            Note(atlas::data::v1::RESIDENCY_MODE_POPULATED,
                 std::string("mlock refused (") + strerror(errno) + "): pages kept mapped, not locked");
          }
          if (lock_refused) Populate(chunk, want - held);
          held = want;  // the chunk stays mapped for the process's life
        }
        // LMDB's map address changes only when a resize remaps it.
        MDB_envinfo info;
        {
          std::unique_lock<std::mutex> lock(dbi_mu_);
          if (mdb_env_info(env_, &info) != 0) info.me_mapaddr = nullptr;
        }
        if (info.me_mapaddr != lmdb_map) { lmdb_map = info.me_mapaddr; prefaulted = 0; }
        const size_t map_end = std::min(held, static_cast<size_t>(info.me_mapsize) / page * page);
        if (lmdb_map && map_end > prefaulted) {
          Populate(static_cast<char*>(lmdb_map) + prefaulted, map_end - prefaulted);
          prefaulted = map_end;
        }
        std::lock_guard<std::mutex> lock(residency_mu_);
        residency_.held = held;
      }
      for (int i = 0; i < 10 && !stop.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  void Residency(atlas::data::v1::StoreResidency* out) {
    std::lock_guard<std::mutex> lock(residency_mu_);
    out->set_mode(residency_.mode);
    out->set_held_bytes(static_cast<int64_t>(residency_.held));
    out->set_limit_bytes(static_cast<int64_t>(residency_.limit));
    out->set_error(residency_.error);
  }

  // Bytes of the store file that are in the page cache now.
  void StoreBytes(int64_t* size_out, int64_t* resident_out) {
    *size_out = *resident_out = 0;
    int fd = -1;
    mdb_env_get_fd(env_, &fd);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) return;
    *size_out = st.st_size;
    void* map = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> in((st.st_size + page - 1) / page);
    if (mincore(map, st.st_size, in.data()) == 0)
      for (unsigned char c : in) *resident_out += (c & 1) ? static_cast<int64_t>(page) : 0;
    munmap(map, st.st_size);
  }

 private:
  struct ResidencyState {
    atlas::data::v1::ResidencyMode mode = atlas::data::v1::RESIDENCY_MODE_OFF;
    size_t held = 0, limit = 0;
    std::string error;
  };

  void Note(atlas::data::v1::ResidencyMode mode, const std::string& why) {
    std::cerr << "atlas-online-reader: keeping the store in RAM: " << why << std::endl;
    std::lock_guard<std::mutex> lock(residency_mu_);
    residency_.mode = mode;
    residency_.error = why;
  }

  // Faults pages in (page cache and page tables) without locking them.
  static void Populate(void* addr, size_t len) {
#ifdef MADV_POPULATE_READ
    if (madvise(addr, len, MADV_POPULATE_READ) == 0) return;
#endif
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    volatile unsigned char sink = 0;
    for (size_t off = 0; off < len; off += page) sink ^= static_cast<volatile unsigned char*>(addr)[off];
  }

  std::mutex residency_mu_;
  ResidencyState residency_;

  std::string path_;
  MDB_env* env_ = nullptr;
  std::mutex dbi_mu_;
  std::shared_mutex dbis_mu_;
  std::unordered_map<std::string, MDB_dbi> dbis_;
};

// ---------------------------------------------------------------- auth

class Auth {
 public:
  bool Load(const std::string& path) {
    std::ifstream in(path);
    if (!in) return false;
    std::string digest;
    int allowed;
    while (in >> digest >> allowed) tokens_[digest] = allowed != 0;
    enabled_ = true;
    return true;
  }

  grpc::Status Check(const grpc::ServerContextBase& ctx, const char* method) const {
    if (!enabled_) return grpc::Status::OK;
    auto it = ctx.client_metadata().find("authorization");
    if (it == ctx.client_metadata().end() || it->second.empty())
      return Error(grpc::StatusCode::UNAUTHENTICATED,
                   "missing bearer token: send metadata 'authorization: Bearer <token>'",
                   "MISSING_TOKEN");
    std::string value(it->second.data(), it->second.size());
    auto space = value.find(' ');
    std::string scheme = value.substr(0, space);
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string token = space == std::string::npos ? "" : value.substr(space + 1);
    token.erase(0, token.find_first_not_of(" \t"));
    token.erase(token.find_last_not_of(" \t") + 1);
    if (scheme != "bearer" || token.empty())
      return Error(grpc::StatusCode::UNAUTHENTICATED,
                   "malformed authorization metadata: expected 'Bearer <token>'",
                   "MALFORMED_TOKEN");
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), md);
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    for (int i = 0; i < SHA256_DIGEST_LENGTH; ++i) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    auto found = tokens_.find(hex);
    if (found == tokens_.end())
      return Error(grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token", "INVALID_TOKEN");
    if (!found->second)
      return Error(grpc::StatusCode::PERMISSION_DENIED,
                   "token " + std::string(hex, 8) + " lacks scope 'data:read' required by " +
                       method,
                   "MISSING_SCOPE");
    return grpc::Status::OK;
  }

 private:
  bool enabled_ = false;
  std::unordered_map<std::string, bool> tokens_;
};

// ---------------------------------------------------------------- the service

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

uint32_t U32(const char* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
int64_t I64(const char* p) { int64_t v; std::memcpy(&v, p, 8); return v; }

grpc::Status Corrupt(size_t size) {
  return Error(grpc::StatusCode::DATA_LOSS,
               "online record is corrupt or of an unknown format (" + std::to_string(size) +
                   " bytes)", "CORRUPT_ONLINE_RECORD");
}

// ---------------------------------------------------------------- call timings

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// One call's phases (ns) and what its thread went through while handling it.
struct CallRecord {
  int64_t start_ns = 0;  // CLOCK_MONOTONIC: comparable with a client's clock on this host
  int64_t auth_ns = 0, lookup_ns = 0, serialize_ns = 0, write_ns = 0;
  int64_t minflt = 0, majflt = 0, nivcsw = 0;
  int32_t entities = 0;
  bool ok = false;
};

// The latest kCapacity calls in a ring written without locks: a slot's sequence number is 0
// while it is written and the call's index + 1 after, so a snapshot skips torn slots.
class CallLog {
 public:
  static constexpr size_t kCapacity = 1 << 17;

  CallLog() : slots_(kCapacity) {}

  void Add(const CallRecord& rec) {
    const uint64_t index = next_.fetch_add(1, std::memory_order_relaxed);
    Slot& slot = slots_[index & (kCapacity - 1)];
    slot.seq.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    slot.rec = rec;
    slot.seq.store(index + 1, std::memory_order_release);
    total_.fetch_add(1, std::memory_order_relaxed);
    if (!rec.ok) failed_.fetch_add(1, std::memory_order_relaxed);
  }

  // Kept calls that started at or after since_ns, in start order.
  std::vector<CallRecord> Since(int64_t since_ns) const {
    std::vector<CallRecord> out;
    for (const Slot& slot : slots_) {
      const uint64_t before = slot.seq.load(std::memory_order_acquire);
      if (!before) continue;
      CallRecord rec = slot.rec;
      std::atomic_thread_fence(std::memory_order_acquire);
      if (slot.seq.load(std::memory_order_relaxed) != before || rec.start_ns < since_ns) continue;
      out.push_back(rec);
    }
    std::sort(out.begin(), out.end(),
              [](const CallRecord& a, const CallRecord& b) { return a.start_ns < b.start_ns; });
    return out;
  }

  int64_t total() const { return static_cast<int64_t>(total_.load()); }
  int64_t failed() const { return static_cast<int64_t>(failed_.load()); }

 private:
  struct Slot {
    std::atomic<uint64_t> seq{0};
    CallRecord rec;
  };
  std::vector<Slot> slots_;
  std::atomic<uint64_t> next_{0}, total_{0}, failed_{0};
};

// Faults and preemptions of the calling thread so far (getrusage RUSAGE_THREAD).
void ThreadCounters(int64_t* minflt, int64_t* majflt, int64_t* nivcsw) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) { *minflt = *majflt = *nivcsw = 0; return; }
  *minflt = ru.ru_minflt;
  *majflt = ru.ru_majflt;
  *nivcsw = ru.ru_nivcsw;
}

// Times a call from the handler's start to gRPC reporting it done, then logs it. Whichever of
// the handler (after Finish returns) and OnDone comes second adds the record and frees it.
class TimedReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit TimedReactor(CallLog* log) : log_(log) {
    rec_.start_ns = MonotonicNs();
    ThreadCounters(&minflt0_, &majflt0_, &nivcsw0_);
  }

  CallRecord& record() { return rec_; }

  void Complete(const grpc::Status& status) {
    rec_.ok = status.ok();
    const int64_t before = MonotonicNs();
    Finish(status);
    finished_ns_ = MonotonicNs();
    rec_.serialize_ns = finished_ns_ - before;
    int64_t minflt, majflt, nivcsw;
    ThreadCounters(&minflt, &majflt, &nivcsw);
    rec_.minflt = minflt - minflt0_;
    rec_.majflt = majflt - majflt0_;
    rec_.nivcsw = nivcsw - nivcsw0_;
    Release();
  }

  void OnDone() override {
    done_ns_ = MonotonicNs();
    Release();
  }

 private:
  void Release() {
    if (parts_.fetch_add(1, std::memory_order_acq_rel) != 1) return;
    rec_.write_ns = std::max<int64_t>(0, done_ns_ - finished_ns_);
    log_->Add(rec_);
    delete this;
  }

  CallLog* log_;
  CallRecord rec_;
  int64_t minflt0_ = 0, majflt0_ = 0, nivcsw0_ = 0;
  int64_t finished_ns_ = 0, done_ns_ = 0;
  std::atomic<int> parts_{0};
};

// The callback API runs the handler inline on gRPC's polling thread: a read is a few
// microseconds of memory-mapped lookups, so a hand-off to a worker pool (the sync API) would
// only add a thread wake-up to every call's latency.
class OnlineFeatures final : public pb::OnlineFeatureService::CallbackService {
 public:
  OnlineFeatures(Store* store, const Auth* auth, int max_entities, CallLog* log)
      : store_(store), auth_(auth), max_(max_entities), log_(log) {}

  grpc::ServerUnaryReactor* GetOnlineFeatures(grpc::CallbackServerContext* ctx,
                                              const pb::GetOnlineFeaturesRequest* req,
                                              pb::GetOnlineFeaturesResponse* resp) override {
    auto* reactor = new TimedReactor(log_);
    CallRecord& rec = reactor->record();
    grpc::Status st = auth_->Check(*ctx, kMethod);
    const int64_t authed = MonotonicNs();
    rec.auth_ns = authed - rec.start_ns;
    const auto& keys = req->read().entity_keys();
    rec.entities = keys.int64_keys_size() + keys.string_keys_size();
    if (st.ok()) st = Read(req->read(), resp->mutable_features());
    rec.lookup_ns = MonotonicNs() - authed;
    reactor->Complete(st);
    return reactor;
  }

 private:
  grpc::Status Read(const pb::GetFeaturesRequest& r, pb::GetFeaturesResponse* out) {
    const auto& ref = r.feature_group();
    if (ref.name().empty())
      return Error(grpc::StatusCode::INVALID_ARGUMENT, "feature_group.name is empty", "EMPTY_NAME");
    const auto& keys = r.entity_keys();
    if (keys.int64_keys_size() && keys.string_keys_size())
      return Error(grpc::StatusCode::INVALID_ARGUMENT,
                   "entity_keys: set int64_keys or string_keys, not both", "INVALID_KEYS");
    const bool ints = keys.int64_keys_size() > 0;
    const int n = ints ? keys.int64_keys_size() : keys.string_keys_size();
    if (n == 0)
      return Error(grpc::StatusCode::INVALID_ARGUMENT,
                   "entity_keys is empty: pass 1 to " + std::to_string(max_) + " keys",
                   "NO_ENTITIES");
    if (n > max_)
      return Error(grpc::StatusCode::INVALID_ARGUMENT,
                   std::to_string(n) + " entity keys requested; at most " + std::to_string(max_) +
                       " per call -- split the request",
                   "TOO_MANY_ENTITIES");
    std::shared_ptr<const Group> group;
    MDB_dbi dbi;
    bool has_db = false;
    Txn txn;
    grpc::Status st;
    // Sub-database handles must exist before the transaction that uses them begins: when the
    // group's handle is new, read again in a fresh transaction.
    for (int attempt = 0; attempt < 2; ++attempt) {
      MDB_dbi catalog;
      const bool has_catalog = store_->Dbi(kCatalogDb, &catalog);
      if (txn.txn) { mdb_txn_abort(txn.txn); txn.txn = nullptr; }
      if (int rc = store_->Begin(&txn))
        return Error(grpc::StatusCode::UNAVAILABLE,
                     "the LMDB online store at " + store_->path() + " failed: " + mdb_strerror(rc),
                     "ONLINE_STORE_UNAVAILABLE");
      st = LoadGroup(txn.txn, has_catalog ? &catalog : nullptr, ref.name(), ref.version(), &group);
      if (!st.ok()) return st;
      bool opened = false;
      has_db = store_->Dbi(group->store_key, &dbi, &opened);
      if (!opened) break;
    }
    if (group->int_keys != ints) {
      const char* type = group->int_keys ? "int64" : "string";
      return Error(grpc::StatusCode::INVALID_ARGUMENT,
                   "feature group " + Quoted(ref.name()) + " has " + type +
                       " entity keys; send " + (group->int_keys ? "int64_keys" : "string_keys"),
                   "BAD_KEY_TYPE");
    }
    std::shared_ptr<const Subset> subset;
    st = GetSubset(group, r.feature_names(), &subset);
    if (!st.ok()) return st;
    const int64_t min_time = group->ttl_us >= 0 ? NowMicros() - group->ttl_us
                                                : std::numeric_limits<int64_t>::min();

    const auto& lay = subset->layout;
    const size_t w32 = lay.float32_width(), w64 = lay.float64_width(), wi = lay.int64_width(),
                 ws = lay.string_width();
    *out->mutable_layout() = lay;
    out->set_feature_group_version(group->msg.version());
    std::string* f32 = out->mutable_float32_values();
    f32->resize(n * w32 * 4);
    out->mutable_float64_values()->Resize(static_cast<int>(n * w64), 0.0);
    out->mutable_int64_values()->Resize(static_cast<int>(n * wi), 0);
    for (size_t i = 0; i < n * ws; ++i) out->add_string_values();
    out->mutable_found()->Resize(n, false);
    out->mutable_event_time_micros()->Resize(n, 0);
    if (r.include_ingestion_times()) out->mutable_ingestion_time_micros()->Resize(n, 0);
    std::vector<std::string> masks;

    const float nan32 = std::numeric_limits<float>::quiet_NaN();
    const double nan64 = std::numeric_limits<double>::quiet_NaN();
    char key_buf[8];
    for (int i = 0; i < n; ++i) {
      MDB_val key, val;
      if (ints) {
        uint64_t k = static_cast<uint64_t>(keys.int64_keys(i));
        for (int b = 7; b >= 0; --b, k >>= 8) key_buf[b] = static_cast<char>(k & 0xff);
        key = {8, key_buf};
      } else {
        const std::string& k = keys.string_keys(i);
        if (k.empty() || k.size() > kMaxStringKeyBytes)
          return Error(grpc::StatusCode::INVALID_ARGUMENT,
                       "entity key " + Quoted(k.substr(0, 40)) + " must be 1.." +
                           std::to_string(kMaxStringKeyBytes) + " UTF-8 bytes",
                       "INVALID_ARGUMENT");
        key = {k.size(), const_cast<char*>(k.data())};
      }
      bool hit = false;
      if (has_db) {
        int rc = mdb_get(txn.txn, dbi, &key, &val);
        if (rc == 0) {
          st = Decode(*group, *subset, static_cast<const char*>(val.mv_data), val.mv_size, min_time,
                      i, n, r.include_ingestion_times(), out, &masks, &hit);
          if (!st.ok()) return st;
        } else if (rc != MDB_NOTFOUND) {
          return Error(grpc::StatusCode::UNAVAILABLE,
                       "the LMDB online store at " + store_->path() + " failed: " + mdb_strerror(rc),
                       "ONLINE_STORE_UNAVAILABLE");
        }
      }
      if (!hit) {
        float* row32 = reinterpret_cast<float*>(&(*f32)[i * w32 * 4]);
        std::fill(row32, row32 + w32, nan32);
        double* row64 = out->mutable_float64_values()->mutable_data() + i * w64;
        std::fill(row64, row64 + w64, nan64);
      }
    }
    for (auto& m : masks) out->add_null_masks(std::move(m));
    return grpc::Status::OK;
  }

  // Copies one stored record into row i of the response (hit=false when expired).
  grpc::Status Decode(const Group& g, const Subset& sub, const char* buf, size_t size,
                      int64_t min_time, int i, int n, bool ingestion, pb::GetFeaturesResponse* out,
                      std::vector<std::string>* masks, bool* hit) {
    if (size < kHeaderSize || static_cast<uint8_t>(buf[0]) != kFormatV1) return Corrupt(size);
    const int64_t event_time = I64(buf + 8);
    if (event_time < min_time) return grpc::Status::OK;
    uint32_t stored[4];
    for (int b = 0; b < 4; ++b) stored[b] = U32(buf + 24 + 4 * b);
    if (std::memcmp(stored, g.widths, sizeof stored) != 0) {
      auto tuple = [](const uint32_t* w) {
        return "(" + std::to_string(w[0]) + ", " + std::to_string(w[1]) + ", " +
               std::to_string(w[2]) + ", " + std::to_string(w[3]) + ")";
      };
      int32_t version;
      std::memcpy(&version, buf + 4, 4);
      return Error(grpc::StatusCode::FAILED_PRECONDITION,
                   "online record of feature group " + Quoted(g.name) +
                       " was written with schema version " + std::to_string(version) +
                       " whose layout differs (block widths " + tuple(stored) + ", expected " +
                       tuple(g.widths) + ")",
                   "ONLINE_SCHEMA_MISMATCH");
    }
    const size_t f32w = g.widths[0], f64w = g.widths[1], i64w = g.widths[2];
    const size_t f32_at = kHeaderSize;
    const size_t f64_at = f32_at + 4 * f32w + (f32w % 2 ? 4 : 0);
    const size_t i64_at = f64_at + 8 * f64w;
    size_t pos = i64_at + 8 * i64w;
    if (pos > size) return Corrupt(size);
    const auto& lay = sub.layout;
    const size_t w32 = lay.float32_width(), w64 = lay.float64_width(), wi = lay.int64_width(),
                 ws = lay.string_width();
    char* dst32 = &(*out->mutable_float32_values())[i * w32 * 4];
    double* dst64 = out->mutable_float64_values()->mutable_data() + i * w64;
    int64_t* dsti = out->mutable_int64_values()->mutable_data() + i * wi;
    if (sub.identity) {
      std::memcpy(dst32, buf + f32_at, 4 * w32);
      std::memcpy(dst64, buf + f64_at, 8 * w64);
      std::memcpy(dsti, buf + i64_at, 8 * wi);
    } else {
      for (size_t j = 0; j < w32; ++j) std::memcpy(dst32 + 4 * j, buf + f32_at + 4 * sub.index[0][j], 4);
      for (size_t j = 0; j < w64; ++j) std::memcpy(dst64 + j, buf + f64_at + 8 * sub.index[1][j], 8);
      for (size_t j = 0; j < wi; ++j) std::memcpy(dsti + j, buf + i64_at + 8 * sub.index[2][j], 8);
    }
    if (g.widths[3]) {
      std::vector<std::pair<size_t, size_t>> strings(g.widths[3]);
      for (auto& s : strings) {
        if (pos + 4 > size) return Corrupt(size);
        size_t len = U32(buf + pos);
        if (pos + 4 + len > size) return Corrupt(size);
        s = {pos + 4, len};
        pos += 4 + len;
      }
      for (size_t j = 0; j < ws; ++j) {
        const auto& s = strings[sub.identity ? j : sub.index[3][j]];
        out->mutable_string_values(static_cast<int>(i * ws + j))->assign(buf + s.first, s.second);
      }
    }
    if (pos + 4 > size) return Corrupt(size);
    const size_t mask_len = U32(buf + pos);
    if (pos + 4 + mask_len > size) return Corrupt(size);
    if (mask_len) {
      if (masks->empty()) masks->resize(n);
      const char* mask = buf + pos + 4;
      if (sub.identity) {
        (*masks)[i].assign(mask, mask_len);
      } else {
        std::string projected((sub.slots.size() + 7) / 8, '\0');
        bool any = false;
        for (size_t j = 0; j < sub.slots.size(); ++j) {
          size_t s = sub.slots[j];
          if (s / 8 < mask_len && (static_cast<uint8_t>(mask[s / 8]) >> (s % 8)) & 1) {
            projected[j / 8] = static_cast<char>(projected[j / 8] | (1 << (j % 8)));
            any = true;
          }
        }
        if (any) (*masks)[i] = std::move(projected);
      }
    }
    out->set_found(i, true);
    out->set_event_time_micros(i, event_time);
    if (ingestion) out->set_ingestion_time_micros(i, I64(buf + 16));
    *hit = true;
    return grpc::Status::OK;
  }

  grpc::Status LoadGroup(MDB_txn* txn, const MDB_dbi* catalog, const std::string& name,
                         int64_t version, std::shared_ptr<const Group>* out) {
    const std::string key = version ? name + "@" + std::to_string(version) : name;
    auto not_found = [&] {
      std::string what = "feature group " + Quoted(name) +
                         (version ? " version " + std::to_string(version) : "");
      return Error(grpc::StatusCode::NOT_FOUND, what + " does not exist",
                   "FEATURE_GROUP_NOT_FOUND");
    };
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
    if (!catalog || mdb_get(txn, *catalog, &k, &v)) return not_found();
    {
      std::shared_lock<std::shared_mutex> lock(groups_mu_);
      auto it = groups_.find(key);
      if (it != groups_.end() && it->second->raw.size() == v.mv_size &&
          std::memcmp(it->second->raw.data(), v.mv_data, v.mv_size) == 0) {
        *out = it->second;
        return grpc::Status::OK;
      }
    }
    std::shared_ptr<const Group> parsed =
        ParseGroup(std::string(static_cast<const char*>(v.mv_data), v.mv_size));
    if (!parsed)
      return Error(grpc::StatusCode::DATA_LOSS,
                   "catalog entry of feature group " + Quoted(name) + " is corrupt",
                   "CORRUPT_CATALOG");
    std::unique_lock<std::shared_mutex> lock(groups_mu_);
    groups_[key] = parsed;
    *out = parsed;
    return grpc::Status::OK;
  }

  grpc::Status GetSubset(const std::shared_ptr<const Group>& g,
                         const google::protobuf::RepeatedPtrField<std::string>& names,
                         std::shared_ptr<const Subset>* out) {
    std::string key = g->store_key;
    for (const auto& n : names) key.append("\x1f").append(n);
    {
      std::shared_lock<std::shared_mutex> lock(subsets_mu_);
      auto it = subsets_.find(key);
      // The cached subset is valid while it was built from this very catalog entry.
      if (it != subsets_.end() && it->second.first == g) {
        *out = it->second.second;
        return grpc::Status::OK;
      }
    }
    auto subset = std::make_shared<Subset>();
    grpc::Status st = MakeSubset(*g, names, subset.get());
    if (!st.ok()) return st;
    std::unique_lock<std::shared_mutex> lock(subsets_mu_);
    if (subsets_.size() > 1024) subsets_.clear();
    subsets_[key] = {g, subset};
    *out = subset;
    return grpc::Status::OK;
  }

  Store* store_;
  const Auth* auth_;
  const int max_;
  CallLog* log_;
  std::shared_mutex groups_mu_, subsets_mu_;
  std::unordered_map<std::string, std::shared_ptr<const Group>> groups_;
  std::unordered_map<std::string,
                     std::pair<std::shared_ptr<const Group>, std::shared_ptr<const Subset>>>
      subsets_;
};

// ---------------------------------------------------------------- scheduling

// struct sched_attr of sched_setattr(2); glibc 2.36 has no wrapper.
struct SchedAttr {
  uint32_t size, sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
  uint32_t sched_util_min, sched_util_max;
};

// Asks for a short scheduler slice on every thread of the process (gRPC starts threads as it
// goes, so this runs again once a second). For SCHED_OTHER, sched_runtime is the slice EEVDF
// gives the task (Linux 6.12+, 0.1..100 ms, no privilege needed): a woken reader thread with
// a short slice gets an early deadline and preempts the task running on a busy CPU, instead
// of waiting up to a default slice (~1.5 ms on 2 CPUs) -- on a shared host, that wait is the
// read's tail. It does not give the reader more CPU, only sooner.
class Slicer {
 public:
  explicit Slicer(int64_t slice_ns) : slice_ns_(slice_ns) {}

  void ApplyToAllThreads() {
    if (slice_ns_ <= 0) return;
    std::vector<long> tids;
    if (DIR* dir = opendir("/proc/self/task")) {
      while (struct dirent* e = readdir(dir))
        if (e->d_name[0] != '.') tids.push_back(std::atol(e->d_name));
      closedir(dir);
    }
    int applied = 0;
    std::string error;
    for (long tid : tids) {
      SchedAttr attr{};
      if (syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0) == 0 &&
          attr.sched_runtime == static_cast<uint64_t>(slice_ns_)) {
        ++applied;
        continue;
      }
      attr = SchedAttr{};
      attr.size = sizeof attr;
      attr.sched_policy = 0;  // SCHED_OTHER
      attr.sched_runtime = static_cast<uint64_t>(slice_ns_);
      if (syscall(SYS_sched_setattr, tid, &attr, 0) == 0) ++applied;
      else error = std::string("sched_setattr: ") + strerror(errno);
    }
    std::lock_guard<std::mutex> lock(mu_);
    applied_ = applied;
    error_ = error;
  }

  void Report(atlas::data::v1::ReaderProcessCounters* out) {
    std::lock_guard<std::mutex> lock(mu_);
    out->set_slice_ns(slice_ns_ > 0 ? slice_ns_ : 0);
    out->set_threads_with_slice(applied_);
    out->set_slice_error(error_);
  }

 private:
  const int64_t slice_ns_;
  std::mutex mu_;
  int applied_ = 0;
  std::string error_;
};

// ---------------------------------------------------------------- reader stats

// Sums /proc/self/task/*/schedstat's run-queue wait (ns) and counts the threads.
void RunDelay(int64_t* delay_ns, int32_t* threads) {
  *delay_ns = 0;
  *threads = 0;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return;
  while (struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + entry->d_name + "/schedstat");
    long long on_cpu = 0, waited = 0;
    if (in >> on_cpu >> waited) { *delay_ns += waited; ++*threads; }
  }
  closedir(dir);
}

// A "Name:   value" line of /proc/self/status (VmLck is in kB, CapEff in hex).
std::string StatusField(const std::string& name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, name.size() + 1, name + ":") == 0) {
      std::string value = line.substr(name.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  return "";
}

std::vector<double> Sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

double Pct(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()));
  return sorted[i];
}

class ReaderStats final : public pb::OnlineReaderService::CallbackService {
 public:
  ReaderStats(Store* store, const Auth* auth, const CallLog* log, bool residency_asked,
              Slicer* slicer)
      : store_(store), auth_(auth), log_(log), residency_asked_(residency_asked),
        slicer_(slicer) {}

  grpc::ServerUnaryReactor* GetReaderStats(grpc::CallbackServerContext* ctx,
                                           const pb::GetReaderStatsRequest* req,
                                           pb::GetReaderStatsResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    grpc::Status st = auth_->Check(*ctx, "/atlas.data.v1.OnlineReaderService/GetReaderStats");
    if (st.ok()) Fill(*req, resp);
    reactor->Finish(st);
    return reactor;
  }

 private:
  void Fill(const pb::GetReaderStatsRequest& req, pb::GetReaderStatsResponse* resp) {
    resp->set_now_monotonic_ns(MonotonicNs());
    resp->set_calls_total(log_->total());
    resp->set_calls_failed(log_->failed());
    const std::vector<CallRecord> calls = log_->Since(req.since_monotonic_ns());
    resp->set_calls_summarized(static_cast<int64_t>(calls.size()));
    const char* names[] = {"auth", "lookup", "serialize", "write", "handler", "total"};
    std::vector<double> phase[6];
    for (const auto& c : calls) {
      const int64_t parts[6] = {c.auth_ns, c.lookup_ns, c.serialize_ns, c.write_ns,
                                c.auth_ns + c.lookup_ns + c.serialize_ns,
                                c.auth_ns + c.lookup_ns + c.serialize_ns + c.write_ns};
      for (int p = 0; p < 6; ++p) phase[p].push_back(parts[p] / 1e3);
    }
    for (int p = 0; p < 6; ++p) {
      const std::vector<double> sorted = Sorted(std::move(phase[p]));
      auto* out = resp->add_phases();
      out->set_name(names[p]);
      out->set_count(static_cast<int64_t>(sorted.size()));
      out->set_p50_us(Pct(sorted, 0.5));
      out->set_p99_us(Pct(sorted, 0.99));
      out->set_p999_us(Pct(sorted, 0.999));
      out->set_max_us(sorted.empty() ? 0 : sorted.back());
    }
    if (req.include_calls()) {
      auto* out = resp->mutable_calls();
      for (const auto& c : calls) {
        out->add_start_monotonic_ns(c.start_ns);
        out->add_auth_ns(c.auth_ns);
        out->add_lookup_ns(c.lookup_ns);
        out->add_serialize_ns(c.serialize_ns);
        out->add_write_ns(c.write_ns);
        out->add_minor_faults(c.minflt);
        out->add_major_faults(c.majflt);
        out->add_involuntary_switches(c.nivcsw);
        out->add_entities(c.entities);
        out->add_ok(c.ok);
      }
    }
    struct rusage ru;
    auto* proc = resp->mutable_process();
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
      proc->set_minor_faults(ru.ru_minflt);
      proc->set_major_faults(ru.ru_majflt);
      proc->set_voluntary_switches(ru.ru_nvcsw);
      proc->set_involuntary_switches(ru.ru_nivcsw);
      proc->set_user_cpu_us(ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec);
      proc->set_system_cpu_us(ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec);
    }
    int64_t delay;
    int32_t threads;
    RunDelay(&delay, &threads);
    proc->set_run_delay_ns(delay);
    proc->set_threads(threads);
    slicer_->Report(proc);

    auto* res = resp->mutable_residency();
    if (residency_asked_) store_->Residency(res);
    else res->set_mode(pb::RESIDENCY_MODE_OFF);
    int64_t size, resident;
    store_->StoreBytes(&size, &resident);
    res->set_store_bytes(size);
    res->set_resident_bytes(resident);
    res->set_locked_bytes(std::atoll(StatusField("VmLck").c_str()) * 1024);
    struct rlimit lim;
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0)
      res->set_memlock_rlimit_bytes(lim.rlim_cur == RLIM_INFINITY ? -1 : static_cast<int64_t>(lim.rlim_cur));
    const unsigned long long caps = std::strtoull(StatusField("CapEff").c_str(), nullptr, 16);
    res->set_can_lock_unlimited((caps >> 14) & 1);  // CAP_IPC_LOCK
  }

  Store* store_;
  const Auth* auth_;
  const CallLog* log_;
  const bool residency_asked_;
  Slicer* slicer_;
};

int Usage() {
  std::cerr << "usage: atlas-online-reader --lmdb DIR --address HOST:PORT [--tokens FILE] "
               "[--max-entities N] [--lock-memory MAX_BYTES] [--scheduler-slice-us US] "
               "[--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n";
  return 2;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

// Plaintext without a certificate; TLS with one (mTLS with a client CA: the handshake fails
// for a client without a certificate signed by it, like grpc.ssl_server_credentials with
// require_client_auth in atlas_core.rpc.server).
std::shared_ptr<grpc::ServerCredentials> Credentials(const std::string& cert_path,
                                                     const std::string& key_path,
                                                     const std::string& ca_path) {
  if (cert_path.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  std::string ca;
  const std::pair<const std::string*, std::string*> files[] = {
      {&cert_path, &pair.cert_chain}, {&key_path, &pair.private_key}, {&ca_path, &ca}};
  for (const auto& [path, out] : files) {
    if (!path->empty() && !ReadFile(*path, out)) {
      std::cerr << "atlas-online-reader: cannot read TLS file " << *path << ": "
                << strerror(errno) << "\n";
      return nullptr;
    }
  }
  grpc::SslServerCredentialsOptions options(
      ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                 : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = ca;
  options.pem_key_cert_pairs.push_back(pair);
  return grpc::SslServerCredentials(options);
}

}  // namespace

int main(int argc, char** argv) {
  std::string lmdb_path, address, tokens, tls_cert, tls_key, tls_client_ca;
  int max_entities = 1000;
  long long lock_memory = 0, slice_us = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--lmdb") lmdb_path = argv[i + 1];
    else if (flag == "--address") address = argv[i + 1];
    else if (flag == "--tokens") tokens = argv[i + 1];
    else if (flag == "--max-entities") max_entities = std::atoi(argv[i + 1]);
    else if (flag == "--lock-memory") lock_memory = std::atoll(argv[i + 1]);
    else if (flag == "--scheduler-slice-us") slice_us = std::atoll(argv[i + 1]);
    else if (flag == "--tls-cert") tls_cert = argv[i + 1];
    else if (flag == "--tls-key") tls_key = argv[i + 1];
    else if (flag == "--tls-client-ca") tls_client_ca = argv[i + 1];
    else return Usage();
  }
  if (lmdb_path.empty() || address.empty() || max_entities < 1 || argc % 2 == 0) return Usage();
  if (tls_cert.empty() != tls_key.empty() || (tls_cert.empty() && !tls_client_ca.empty()))
    return Usage();

  // Die with the data service that started us, so a kill -9 of it frees the port.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  const pid_t parent = getppid();
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // inherited by gRPC's threads
  if (parent == 1) return 1;

  Store store(lmdb_path);
  if (int rc = store.Open()) {
    std::cerr << "atlas-online-reader: cannot open the LMDB online store at " << lmdb_path << ": "
              << mdb_strerror(rc) << "\n";
    return 1;
  }
  Auth auth;
  if (!tokens.empty() && !auth.Load(tokens)) {
    std::cerr << "atlas-online-reader: cannot read tokens file " << tokens << "\n";
    return 1;
  }
  std::shared_ptr<grpc::ServerCredentials> credentials =
      Credentials(tls_cert, tls_key, tls_client_ca);
  if (!credentials) return 1;
  CallLog calls;
  OnlineFeatures service(&store, &auth, max_entities, &calls);
  Slicer slicer(slice_us * 1000);
  slicer.ApplyToAllThreads();  // threads started from here on inherit it
  ReaderStats stats(&store, &auth, &calls, lock_memory > 0, &slicer);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, credentials, &port);
  builder.RegisterService(&service);
  builder.RegisterService(&stats);
  builder.SetMaxSendMessageSize(-1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "atlas-online-reader: cannot listen on " << address
              << (tls_cert.empty() ? "" : " with TLS (is " + tls_cert + " a PEM certificate "
                                          "chain for the PEM key " + tls_key + "?)")
              << "\n";
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus("atlas.data.v1.OnlineFeatureService", true);
  std::atomic<bool> stopping{false};
  std::thread resident, slicing;
  if (lock_memory > 0)
    resident = std::thread([&] { store.KeepResident(static_cast<size_t>(lock_memory), stopping); });
  if (slice_us > 0)
    slicing = std::thread([&] {
      while (!stopping.load()) {
        slicer.ApplyToAllThreads();
        for (int i = 0; i < 10 && !stopping.load(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  std::cout << "listening " << port << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  stopping = true;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (resident.joinable()) resident.join();
  if (slicing.joinable()) slicing.join();
  return 0;
}
