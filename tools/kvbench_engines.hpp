// kvbench's engines: kvstore, LMDB, Kyoto Cabinet (HashDB), Tkrzw (HashDBM)
// and a heap std::unordered_map behind one interface, so that every workload
// runs the same loop over all of them (kvbench.cpp).
#pragma once

#include <kchashdb.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <tkrzw_dbm_hash.h>
#include <tkrzw_str_util.h>

#include <cstdint>
#include <filesystem>
#include <kvstore/store.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvbench_die.hpp"

// Bytes the file really occupies on disk (LMDB's file is as long as its map
// size, but sparse): allocated blocks, not the length.
inline std::uint64_t disk_usage(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

// ------------------------------------------------------------------ engines

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char* name() const = 0;
  virtual void open() = 0;
  virtual void close() = 0;
  virtual void put(const std::string& k, const std::string& v) = 0;
  // Returns whether found; when found, `check` must equal the value.
  virtual bool get(const std::string& k, const std::string* check) = 0;
  virtual void erase(const std::string& k) = 0;
  // Writes are grouped in transactions of this many where the engine has them.
  virtual void flush() {}
  // Makes what was written durable, where closing does not (LMDB with MDB_NOSYNC).
  virtual void sync_to_disk() {}
  virtual std::uint64_t disk_bytes() = 0;
};

inline bool same(std::string_view got, const std::string* want) { return want == nullptr || got == *want; }

class KvEngine : public Engine {
 public:
  explicit KvEngine(std::filesystem::path p, kvstore::Sync sync = kvstore::Sync::none,
                    std::uint64_t initial_size = std::uint64_t{1} << 20)
      : path_(std::move(p)), sync_(sync), initial_size_(initial_size) {}
  const char* name() const override { return sync_ == kvstore::Sync::always ? "kvstore(sync)" : "kvstore"; }
  void open() override {
    kvstore::Options o;
    o.sync = sync_;
    o.initial_size = initial_size_;
    o.sync_on_close = sync_on_close_;
    s_.emplace(kvstore::Store::open(path_, o));
  }
  // For the handles opened from now on (Options::sync_on_close).
  void set_sync_on_close(bool on) { sync_on_close_ = on; }
  void close() override { s_.reset(); }
  void put(const std::string& k, const std::string& v) override { s_->put(k, v); }
  bool get(const std::string& k, const std::string* check) override {
    bool ok = true;
    const bool found = s_->visit(k, [&](std::string_view v) { ok = same(v, check); });
    if (!ok) die("kvstore returned a wrong value");
    return found;
  }
  void erase(const std::string& k) override { (void)s_->erase(k); }
  std::uint64_t disk_bytes() override { return disk_usage(path_); }
  kvstore::Store& store() { return *s_; }
  void apply(const std::vector<kvstore::BatchOp>& ops) { s_->apply(ops); }

 private:
  std::filesystem::path path_;
  kvstore::Sync sync_;
  std::uint64_t initial_size_;
  bool sync_on_close_ = true;
  std::optional<kvstore::Store> s_;
};

class LmdbEngine : public Engine {
 public:
  LmdbEngine(std::filesystem::path p, std::uint64_t map_size) : path_(std::move(p)), map_size_(map_size) {}
  ~LmdbEngine() override { close(); }
  const char* name() const override { return "lmdb"; }
  void open() override {
    check(mdb_env_create(&env_));
    check(mdb_env_set_mapsize(env_, map_size_));
    check(mdb_env_open(env_, path_.c_str(), MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS, 0644));
    MDB_txn* t = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &t));
    check(mdb_dbi_open(t, nullptr, 0, &dbi_));
    check(mdb_txn_commit(t));
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_));
    mdb_txn_reset(read_);
  }
  void sync_to_disk() override {
    flush();
    check(mdb_env_sync(env_, 1));
  }
  void close() override {
    if (env_ == nullptr) return;
    flush();
    mdb_txn_abort(read_);
    mdb_env_close(env_);
    env_ = nullptr;
  }
  void put(const std::string& k, const std::string& v) override {
    MDB_val key{k.size(), const_cast<char*>(k.data())};
    MDB_val val{v.size(), const_cast<char*>(v.data())};
    check(mdb_put(writer(), dbi_, &key, &val, 0));
    after_write();
  }
  bool get(const std::string& k, const std::string* want) override {
    if (write_ != nullptr) flush();
    check(mdb_txn_renew(read_));
    MDB_val key{k.size(), const_cast<char*>(k.data())};
    MDB_val val{};
    const int rc = mdb_get(read_, dbi_, &key, &val);
    if (rc == 0 && !same({static_cast<char*>(val.mv_data), val.mv_size}, want)) die("lmdb returned a wrong value");
    mdb_txn_reset(read_);
    if (rc != 0 && rc != MDB_NOTFOUND) check(rc);
    return rc == 0;
  }
  void erase(const std::string& k) override {
    MDB_val key{k.size(), const_cast<char*>(k.data())};
    const int rc = mdb_del(writer(), dbi_, &key, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) check(rc);
    after_write();
  }
  void flush() override {
    if (write_ != nullptr) check(mdb_txn_commit(write_));
    write_ = nullptr;
    pending_ = 0;
  }
  std::uint64_t disk_bytes() override { return disk_usage(path_); }

 private:
  static void check(int rc) {
    if (rc != 0) die(std::string("lmdb: ") + mdb_strerror(rc));
  }
  MDB_txn* writer() {
    if (write_ == nullptr) check(mdb_txn_begin(env_, nullptr, 0, &write_));
    return write_;
  }
  void after_write() {
    if (++pending_ == 1000) flush();  // 1000 writes a transaction
  }
  std::filesystem::path path_;
  std::uint64_t map_size_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* read_ = nullptr;
  MDB_txn* write_ = nullptr;
  int pending_ = 0;
};

class KyotoEngine : public Engine {
 public:
  KyotoEngine(std::filesystem::path p, std::uint64_t n) : path_(std::move(p)), n_(n) {}
  const char* name() const override { return "kyotocabinet"; }
  void open() override {
    db_ = std::make_unique<kyotocabinet::HashDB>();
    db_->tune_buckets(static_cast<int64_t>(n_ * 2));
    if (!db_->open(path_.string(), kyotocabinet::HashDB::OWRITER | kyotocabinet::HashDB::OCREATE)) die("kyoto open");
  }
  void close() override {
    if (db_) db_->close();
    db_.reset();
  }
  void put(const std::string& k, const std::string& v) override {
    if (!db_->set(k.data(), k.size(), v.data(), v.size())) die("kyoto set");
  }
  bool get(const std::string& k, const std::string* want) override {
    char buf[4096];
    const int32_t n = db_->get(k.data(), k.size(), buf, sizeof buf);
    if (n >= 0 && !same({buf, static_cast<std::size_t>(n)}, want)) die("kyoto returned a wrong value");
    return n >= 0;
  }
  void erase(const std::string& k) override { db_->remove(k.data(), k.size()); }
  std::uint64_t disk_bytes() override { return disk_usage(path_); }

 private:
  std::filesystem::path path_;
  std::uint64_t n_;
  std::unique_ptr<kyotocabinet::HashDB> db_;
};

class TkrzwEngine : public Engine {
 public:
  TkrzwEngine(std::filesystem::path p, std::uint64_t n) : path_(std::move(p)), n_(n) {}
  const char* name() const override { return "tkrzw"; }
  void open() override {
    db_ = std::make_unique<tkrzw::HashDBM>();
    tkrzw::HashDBM::TuningParameters t;
    t.num_buckets = static_cast<int64_t>(n_ * 2);
    if (db_->OpenAdvanced(path_.string(), true, tkrzw::File::OPEN_DEFAULT, t) != tkrzw::Status::SUCCESS) die("tkrzw open");
  }
  void close() override {
    if (db_) db_->Close();
    db_.reset();
  }
  void put(const std::string& k, const std::string& v) override {
    if (db_->Set(k, v) != tkrzw::Status::SUCCESS) die("tkrzw set");
  }
  bool get(const std::string& k, const std::string* want) override {
    std::string v;
    const bool found = db_->Get(k, &v) == tkrzw::Status::SUCCESS;
    if (found && !same(v, want)) die("tkrzw returned a wrong value");
    return found;
  }
  void erase(const std::string& k) override { db_->Remove(k); }
  std::uint64_t disk_bytes() override { return disk_usage(path_); }

 private:
  std::filesystem::path path_;
  std::uint64_t n_;
  std::unique_ptr<tkrzw::HashDBM> db_;
};

class HeapEngine : public Engine {
 public:
  const char* name() const override { return "std::unordered_map"; }
  void open() override {}
  void close() override {}
  void put(const std::string& k, const std::string& v) override { m_[k] = v; }
  bool get(const std::string& k, const std::string* want) override {
    const auto it = m_.find(k);
    if (it != m_.end() && !same(it->second, want)) die("heap map returned a wrong value");
    return it != m_.end();
  }
  void erase(const std::string& k) override { m_.erase(k); }
  std::uint64_t disk_bytes() override { return 0; }

 private:
  std::unordered_map<std::string, std::string> m_;
};

