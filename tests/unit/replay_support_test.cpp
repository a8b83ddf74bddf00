// The pieces a rebuild is made of, on their own: LatestIndex (key -> newest
// record, with erases and live totals) and FileWriter (streamed and placed
// writes, removed unless finished).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <random>
#include <string>
#include <vector>

#include "../support/temp_dir.hpp"
#include "kvstore/error.hpp"
#include "file_writer.hpp"
#include "hash.hpp"
#include "latest_index.hpp"

using kvstore::detail::FileWriter;
using kvstore::detail::LatestIndex;
using kvstore::detail::RecordType;
using kvstore::detail::RecordView;

namespace {

// Records kept in memory at fake, 8-aligned offsets: LatestIndex reads them
// back through its callback, as it would read the mapping.
struct History {
  std::map<std::uint64_t, RecordView> at;
  std::vector<std::string> keep;  // owns the key and value bytes
  std::uint64_t next = 4096;
  RecordView add(const std::string& key, const std::string& value, RecordType type) {
    keep.push_back(key);
    const std::string& k = keep.back();
    keep.push_back(value);
    const std::string& v = keep.back();
    const std::uint64_t size = kvstore::detail::record_size(k.size(), v.size());
    RecordView r{next, size, type, 0, k, v};
    at[next] = r;
    next += size;
    return r;
  }
};

}  // namespace

TEST(LatestIndex, NewestRecordWinsAndErasesCount) {
  History h;
  h.keep.reserve(100000);  // views into `keep` must not move
  LatestIndex latest(4, [&](std::uint64_t offset) { return h.at.at(offset); }, 1 << 24);
  std::map<std::string, std::pair<std::uint64_t, std::string>> model;  // key -> (offset, value)
  std::set<std::string> seen;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; ++i) {  // far past the 4 keys it was sized for: it must rehash
    const std::string key = std::string("k").append(std::to_string(rng() % 3000));
    const bool erase = rng() % 4 == 0;
    const std::string value = erase ? "" : std::string(rng() % 40, 'v');
    const RecordView r = h.add(key, value, erase ? RecordType::erase : RecordType::put);
    latest.mark_visited(r.offset);
    latest.note(kvstore::detail::key_hash(key, 7), r);
    seen.insert(key);
    if (erase) {
      model.erase(key);
    } else {
      model[key] = {r.offset, value};
    }
  }
  latest.finish();
  std::uint64_t key_bytes = 0;
  std::uint64_t value_bytes = 0;
  std::uint64_t record_bytes = 0;
  for (const auto& [key, ov] : model) {
    EXPECT_EQ(latest.find_live(kvstore::detail::key_hash(key, 7), key), ov.first) << key;
    key_bytes += key.size();
    value_bytes += ov.second.size();
    record_bytes += kvstore::detail::record_size(key.size(), ov.second.size());
  }
  std::size_t erased = 0;  // keys whose newest record is an erase: not live
  for (const std::string& key : seen) {
    if (model.count(key) != 0) continue;
    ++erased;
    EXPECT_EQ(latest.find_live(kvstore::detail::key_hash(key, 7), key), 0U) << key;
  }
  EXPECT_GT(erased, 0U);
  EXPECT_EQ(latest.find_live(kvstore::detail::key_hash("never", 7), "never"), 0U);
  EXPECT_EQ(latest.live_keys(), model.size());
  EXPECT_EQ(latest.live_key_bytes(), key_bytes);
  EXPECT_EQ(latest.live_value_bytes(), value_bytes);
  EXPECT_EQ(latest.live_record_bytes(), record_bytes);
  std::uint64_t live = 0;
  latest.for_each_live([&](std::uint64_t, std::uint64_t offset) {
    ++live;
    EXPECT_EQ(h.at.at(offset).type, RecordType::put);
  });
  EXPECT_EQ(live, model.size());
  EXPECT_TRUE(latest.visited(4096));
  EXPECT_FALSE(latest.visited(4096 + 8 * 1000000));
}

TEST(FileWriter, StreamsAndPlacesBytesThenHandsOverTheFile) {
  kvstore::test::TempDir d;
  const std::string path = d.file("w.kv");
  std::string streamed;
  {
    FileWriter w(path, 1 << 20);
    w.set_stream_begin(8192);
    for (int i = 0; i < 5000; ++i) {  // more than one buffer's worth
      const std::string piece = std::to_string(i) + ",";
      w.append(piece.data(), piece.size());
      streamed += piece;
    }
    EXPECT_EQ(w.stream_position(), 8192 + streamed.size());
    w.write("HEAD", 4, 0);
    const kvstore::detail::Fd fd = w.finish(8192 + streamed.size());
    EXPECT_TRUE(fd);
  }
  std::ifstream in(path, std::ios::binary);
  const std::string all{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ASSERT_EQ(all.size(), 8192 + streamed.size());
  EXPECT_EQ(all.substr(0, 4), "HEAD");
  EXPECT_EQ(all.substr(8192), streamed);
}

TEST(FileWriter, AnUnfinishedFileIsRemoved) {
  kvstore::test::TempDir d;
  const std::string path = d.file("w.kv");
  {
    FileWriter w(path, 1 << 16);
    w.append("x", 1);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(FileWriter, RefusesAPathThatExists) {
  kvstore::test::TempDir d;
  const std::string path = d.file("w.kv");
  std::ofstream(path) << "mine";
  EXPECT_THROW({ FileWriter w(path, 1 << 16); }, kvstore::Error);
  std::ifstream in(path);
  const std::string kept{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(kept, "mine");  // neither truncated nor removed
}
