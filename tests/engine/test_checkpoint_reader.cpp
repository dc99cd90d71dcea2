// The safe checkpoint reader on real files written by torch.save (zip and legacy formats) and
// real fairseq checkpoints, and on hostile or broken input.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/pickle_machine.h"
#include "engine_fixtures.h"

using decayfw::engine::CheckpointError;
using decayfw::engine::read_checkpoint;
using decayfw::engine::read_checkpoint_bytes;
using decayfw::engine::read_torch_bytes;
using decayfw::engine::read_torch_file;
using decayfw::engine::pickle::Value;
using decayfw::testing::fixture;
using Kind = Value::Kind;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

at::Tensor tensor(const decayfw::engine::TorchFile& f, const std::string& key) {
  auto v = f.root->get(key);
  EXPECT_TRUE(v && v->is(Kind::Tensor)) << key;
  return v ? v->data : at::Tensor();
}

class BothFormats : public ::testing::TestWithParam<std::string> {};

TEST_P(BothFormats, EveryDtypeSharedStoragesViewsAndPlainValues) {
  const auto f = read_torch_file(fixture("tensors_" + GetParam() + ".pt"));
  EXPECT_EQ(f.format, GetParam());
  const at::Tensor base = at::arange(12, at::kFloat).reshape({3, 4}) / 8;
  EXPECT_TRUE(at::equal(tensor(f, "f32"), base));
  EXPECT_TRUE(at::equal(tensor(f, "f64"), base.to(at::kDouble) * 3));
  EXPECT_TRUE(at::equal(tensor(f, "f16"), base.to(at::kHalf)));
  EXPECT_TRUE(at::equal(tensor(f, "bf16"), base.to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(tensor(f, "i64"), at::arange(7)));
  EXPECT_TRUE(at::equal(tensor(f, "i32"), at::arange(5, at::kInt) - 2));
  EXPECT_EQ(tensor(f, "u8").scalar_type(), at::kByte);
  EXPECT_TRUE(at::equal(tensor(f, "bool"), at::tensor(std::vector<int64_t>{1, 0}).to(at::kBool)));
  // one storage, two names: the same memory (tied weights resolve to one tensor)
  EXPECT_EQ(tensor(f, "shared_a").data_ptr(), tensor(f, "shared_b").data_ptr());
  EXPECT_TRUE(at::equal(tensor(f, "view"), tensor(f, "shared_a").slice(0, 1).slice(1, 0, 6, 2)));
  EXPECT_EQ(tensor(f, "empty").sizes(), at::IntArrayRef({0, 3}));
  EXPECT_EQ(tensor(f, "scalar").dim(), 0);
  EXPECT_FLOAT_EQ(tensor(f, "scalar").item<float>(), 2.5f);
  // argparse.Namespace is recorded, not constructed
  auto args = f.root->get("args");
  ASSERT_TRUE(args && args->is(Kind::Object));
  EXPECT_EQ(args->module + "." + args->name, "argparse.Namespace");
  EXPECT_EQ(args->attr("decoder_layers")->integer, 2);
  EXPECT_EQ(args->attr("arch")->text, "transformer_lm");
  EXPECT_EQ(args->attr("lr")->scalar_text(), "0.10000000000000001");
  EXPECT_TRUE(args->attr("flag")->boolean);
  EXPECT_TRUE(args->attr("none")->is(Kind::None));
  auto nested = f.root->get("nested");
  EXPECT_EQ(nested->get("big")->integer, int64_t(1) << 40);
  EXPECT_EQ(nested->get("neg")->integer, -5);
  EXPECT_EQ(nested->get("text")->text, "h\xc3\xa9llo");
  EXPECT_EQ(nested->get("list")->items.size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(Formats, BothFormats, ::testing::Values("zip", "legacy"));

TEST(CheckpointReader, RealFairseqCheckpointsInBothFormats) {
  for (const char* name : {"base/checkpoint_last.pt", "decay/checkpoint_last.pt", "legacy/checkpoint_legacy.pt"}) {
    SCOPED_TRACE(name);
    const auto c = read_checkpoint(fixture(name));
    EXPECT_FALSE(c.model.empty());
    EXPECT_TRUE(c.model.count("decoder.layers.0.fc1.weight"));
    EXPECT_EQ(c.hparams.at("decoder_layers"), "2");
    EXPECT_EQ(c.hparams.at("decoder_embed_dim"), "32");
    EXPECT_EQ(c.hparams_source, std::string(name).rfind("legacy", 0) == 0 ? "args" : "cfg.model");
    EXPECT_EQ(c.format, std::string(name).rfind("legacy", 0) == 0 ? "legacy" : "zip");
    EXPECT_GE(c.decoder_version(), 3);
  }
  // the state dict's _metadata attribute (set by BUILD) stays an attribute, not an item
  const auto base = read_checkpoint(fixture("base/checkpoint_last.pt"));
  const auto model = base.root->get("model");
  ASSERT_TRUE(model && model->is(Kind::Dict));
  EXPECT_EQ(model->get("_metadata"), nullptr);
  ASSERT_TRUE(model->state && model->state->get("_metadata"));
  EXPECT_EQ(model->entries.size(), base.model.size());
  const auto legacy = read_checkpoint(fixture("legacy/checkpoint_legacy.pt"));
  EXPECT_TRUE(legacy.model.count("decoder.layers.0.self_attn.in_proj_weight"));
  EXPECT_EQ(legacy.hparams.at("arch"), "transformer_lm");
}

TEST(CheckpointReader, CodeRunningPicklesAreRefusedAndNeverRun) {
  const std::string marker = slurp(fixture("marker_path.txt"));
  for (const char* name : {"evil_legacy.pt", "evil_zip.pt"}) {
    SCOPED_TRACE(name);
    try {
      read_checkpoint(fixture(name));
      ADD_FAILURE() << "a code-running pickle was accepted";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("refusing to run"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("system"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(marker));
  }
}

void expect_error(const std::string& path, const std::string& needle) {
  try {
    read_checkpoint(path);
    ADD_FAILURE() << path << " was accepted";
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find(path), std::string::npos) << "the message names the file: " << what;
  }
}

TEST(CheckpointReader, MissingEmptyRandomAndNonCheckpointFilesGiveClearErrors) {
  expect_error("/nonexistent/model.pt", "cannot open");
  expect_error(std::filesystem::temp_directory_path().string(), "is a directory");
  expect_error(write_temp("decayfw_empty.pt", ""), "empty");
  std::mt19937 rng(1);
  std::string noise(4096, '\0');
  for (auto& ch : noise) ch = static_cast<char>(rng());
  expect_error(write_temp("decayfw_noise.pt", noise), "not a torch checkpoint");
  expect_error(write_temp("decayfw_text.pt", "hello\n"), "not a torch checkpoint");
  expect_error(fixture("tensors_zip.pt"), "no 'model' state dict");
}

// expected_tensors.txt (written by make_reader_fixtures.py): "name dtype numel sum v0 v1 ...".
struct Expected {
  std::string dtype;
  int64_t numel = 0;
  double sum = 0;
  std::vector<double> values;
};

std::map<std::string, Expected> expected_tensors() {
  std::map<std::string, Expected> out;
  std::istringstream in(slurp(fixture("reader/expected_tensors.txt")));
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string name;
    Expected e;
    f >> name >> e.dtype >> e.numel >> e.sum;
    for (double v; f >> v;) e.values.push_back(v);
    out[name] = e;
  }
  return out;
}

at::ScalarType dtype_named(const std::string& n) {
  static const std::map<std::string, at::ScalarType> types = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"int64", at::kLong},    {"int32", at::kInt},      {"int16", at::kShort},  {"int8", at::kChar},
      {"uint8", at::kByte},    {"bool", at::kBool}};
  return types.at(n);
}

class EveryFormatAndProtocol : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(EveryFormatAndProtocol, TensorsEqualWhatPythonWrote) {
  const auto [format, protocol] = GetParam();
  const auto f = read_torch_file(fixture("reader/tensors_" + format + "_p" + std::to_string(protocol) + ".pt"));
  EXPECT_EQ(f.format, format);
  const auto expected = expected_tensors();
  ASSERT_EQ(expected.size(), 17u);
  ASSERT_TRUE(f.root->is(Kind::Dict));
  EXPECT_EQ(f.root->entries.size(), expected.size());
  for (const auto& [name, e] : expected) {
    SCOPED_TRACE(name);
    const at::Tensor t = tensor(f, name);
    ASSERT_TRUE(t.defined());
    EXPECT_EQ(t.scalar_type(), dtype_named(e.dtype));
    ASSERT_EQ(t.numel(), e.numel);
    const at::Tensor flat = t.to(at::kDouble).flatten().contiguous();
    EXPECT_NEAR(flat.sum().item<double>(), e.sum, 1e-9 * (1 + std::abs(e.sum)));
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(flat[i].item<double>(), e.values[static_cast<size_t>(i)]) << i;
  }
  // views share their storage: writes through one name show through the others
  EXPECT_EQ(tensor(f, "shared_a").data_ptr(), tensor(f, "shared_b").data_ptr());
  EXPECT_EQ(tensor(f, "view").storage().data(), tensor(f, "shared_a").storage().data());
  EXPECT_FALSE(tensor(f, "transposed").is_contiguous());
  EXPECT_TRUE(at::equal(tensor(f, "transposed"), tensor(f, "shared_a").t()));
  EXPECT_EQ(f.num_storages, 14);  // 17 tensors, 4 of them on one storage
}

INSTANTIATE_TEST_SUITE_P(Files, EveryFormatAndProtocol,
                         ::testing::Combine(::testing::Values("zip", "legacy"), ::testing::Values(1, 2, 3, 4, 5)),
                         [](const auto& info) { return std::get<0>(info.param) + "_p" + std::to_string(std::get<1>(info.param)); });

TEST(CheckpointReader, TensorsOutsideTheirStorageAndBrokenStoragesAreReported) {
  const auto good = read_checkpoint(fixture("reader/good_handmade.pt"));
  EXPECT_TRUE(at::equal(good.model.at("w"), at::tensor({2.f, 3.f, 4.f})));
  expect_error(fixture("reader/bad_past_storage.pt"), "reaches element 10 of storage '0' which has 4");
  expect_error(fixture("reader/bad_offset.pt"), "reaches element 5 of storage '0' which has 4");
  expect_error(fixture("reader/bad_missing_storage.pt"), "storage '1' is not in the file");
  expect_error(fixture("reader/bad_storage_type.pt"), "unknown storage type 'EvilStorage'");
  expect_error(fixture("reader/bad_short_storage.pt"), "storage '0' claims 100 elements");
  expect_error(fixture("reader/bad_zip_storage_size.pt"), "storage '0' holds 16 bytes, the pickle says 8");
  expect_error(fixture("reader/bad_zip_empty_record.pt"), "not a readable torch zip archive");
}

TEST(CheckpointReader, TensorsThatPlainPickleWroteAreReadFromTheirNestedStorages) {
  const auto c = read_checkpoint(fixture("reader/inline_storages.pt"));
  const at::Tensor a = c.model.at("a"), b = c.model.at("b"), i16 = c.model.at("c");
  EXPECT_EQ(a.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::equal(a, at::arange(6, at::kDouble).reshape({2, 3})));
  EXPECT_TRUE(at::equal(b, a[1]));
  EXPECT_TRUE(at::equal(c.model.at("d"), at::tensor({0.f, 1.f, 2.f})));
  EXPECT_TRUE(at::equal(c.model.at("e"), at::tensor({3.f, 4.f, 5.f})));
  EXPECT_EQ(c.model.at("d").storage().data(), c.model.at("e").storage().data()) << "one nested storage, read once";
  EXPECT_EQ(i16.scalar_type(), at::kShort);
  EXPECT_TRUE(at::equal(i16, at::tensor({7, 8}, at::kShort)));
}

TEST(CheckpointReader, CodeRunningTorchFilesInEveryLayoutAreRefused) {
  // the plain pickles of make_reader_fixtures.py, wrapped into the legacy layout
  const std::string head = slurp(fixture("reader/tensors_legacy_p2.pt")).substr(0, 15);  // the magic pickle
  for (const char* name : {"evil_reduce_p2.pkl", "evil_reduce_p4.pkl", "evil_reduce_p0.pkl", "evil_eval.pkl"}) {
    SCOPED_TRACE(name);
    const std::string bytes = head + "\x80\x02M\xe9\x03.\x80\x02}." + slurp(fixture(std::string("reader/") + name));
    try {
      read_checkpoint_bytes(name, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ADD_FAILURE() << "accepted";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("refusing to run"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST(CheckpointReader, HostilePicklesInsideACheckpointFailCleanly) {
  const std::string head = slurp(fixture("reader/tensors_legacy_p2.pt")).substr(0, 15) + "\x80\x02M\xe9\x03.\x80\x02}.";
  const std::string deep = "\x80\x02N" + std::string(2000000, '\x85') + ".";
  const std::string cycle = std::string("\x80\x02]q\x00h\x00" "a.", 9);
  for (const std::string& body : {deep, cycle}) {
    const std::string bytes = head + body;
    EXPECT_THROW(read_checkpoint_bytes("hostile", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                 CheckpointError);
  }
}

TEST(CheckpointReader, ZipRecordsClaimingMoreThanTheFileHoldsAreRefusedBeforeAllocating) {
  std::string bytes = slurp(fixture("reader/tensors_zip_p2.pt"));
  // the central directory entry of data/0 (signature PK\1\2, name at +46): claim 2 GiB uncompressed
  size_t entry = std::string::npos;
  for (size_t p = bytes.find("PK\x01\x02"); p != std::string::npos; p = bytes.find("PK\x01\x02", p + 1)) {
    const size_t name_len = static_cast<uint8_t>(bytes[p + 28]) | static_cast<uint8_t>(bytes[p + 29]) << 8;
    if (bytes.compare(p + 46, name_len, "tensors_zip_p2/data/0") == 0) entry = p;
  }
  ASSERT_NE(entry, std::string::npos);
  bytes.replace(entry + 24, 4, std::string("\x00\x00\x00\x80", 4));
  try {
    read_torch_bytes("patched.pt", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ADD_FAILURE() << "accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("zip record 'tensors_zip_p2/data/0' claims 2147483648 bytes"), std::string::npos)
        << e.what();
  }
}

TEST(CheckpointReader, EveryTruncationOfARealCheckpointFailsCleanly) {
  for (const char* name : {"legacy/checkpoint_legacy.pt", "base/checkpoint_last.pt"}) {
    const std::string bytes = slurp(fixture(name));
    ASSERT_GT(bytes.size(), 1000u);
    int failures = 0;
    for (size_t cut = 1; cut < bytes.size(); cut += std::max<size_t>(1, bytes.size() / 97)) {
      try {
        read_checkpoint_bytes(name, reinterpret_cast<const uint8_t*>(bytes.data()), cut);
      } catch (const CheckpointError&) {
        ++failures;
      }
    }
    EXPECT_GT(failures, 90) << name;
  }
}

TEST(CheckpointReader, EveryReaderFixtureCutShortFailsCleanly) {
  // every protocol and format, the hostile and the broken files: any prefix is an error of the
  // reader's own types (a crash, a sanitizer report or another exception type fails the test)
  const std::string dir = fixture("reader");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".pt" && entry.path().extension() != ".pkl") continue;
    SCOPED_TRACE(name);
    ++files;
    const std::string bytes = slurp(entry.path().string());
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    for (size_t cut = 0; cut < bytes.size(); cut += std::max<size_t>(1, bytes.size() / 60)) {
      EXPECT_THROW(read_torch_bytes(name, data, cut), CheckpointError) << "cut at " << cut;
      size_t offset = 0;
      EXPECT_THROW(decayfw::engine::pickle::read_pickle(data, cut, offset), decayfw::engine::pickle::PickleError)
          << "cut at " << cut;
    }
  }
  EXPECT_GE(files, 30);
}

TEST(CheckpointReader, FlippedBytesNeverCrash) {
  const std::string bytes = slurp(fixture("legacy/checkpoint_legacy.pt"));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string b = bytes;
    for (int k = 0; k < 4; ++k) b[rng() % std::min<size_t>(b.size(), 4000)] = static_cast<char>(rng());
    try {
      read_checkpoint_bytes("flipped", reinterpret_cast<const uint8_t*>(b.data()), b.size());
    } catch (const CheckpointError&) {
    }
  }
}

}  // namespace
