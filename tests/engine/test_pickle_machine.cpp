// The safe pickle machine on its own: the same values pickled by Python in every protocol (0–5),
// hostile pickles that would run code in Python (refused, and nothing runs), and hand-made
// malformed streams (errors naming the opcode and offset; never a crash, a hang or a leak).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "checkpoint/pickle_machine.h"
#include "engine_fixtures.h"

using decayfw::engine::pickle::Limits;
using decayfw::engine::pickle::PickleError;
using decayfw::engine::pickle::read_pickle;
using decayfw::engine::pickle::Value;
using decayfw::engine::pickle::ValuePtr;
using decayfw::testing::fixture;
using Kind = Value::Kind;
using namespace std::string_literals;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ValuePtr parse(const std::string& bytes, const Limits& limits = {}) {
  size_t pos = 0;
  ValuePtr v = read_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), pos, limits);
  EXPECT_EQ(pos, bytes.size());
  return v;
}

// The PickleError message of parsing `bytes` ("" if it parsed).
std::string error_of(const std::string& bytes, const Limits& limits = {}) {
  try {
    parse(bytes, limits);
  } catch (const PickleError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

class EveryProtocol : public ::testing::TestWithParam<int> {};

TEST_P(EveryProtocol, PlainValuesReadAsPythonWroteThem) {
  const ValuePtr v = parse(slurp(fixture("reader/plain_p" + std::to_string(GetParam()) + ".pkl")));
  ASSERT_TRUE(v->is(Kind::Dict));
  EXPECT_TRUE(v->get("none")->is(Kind::None));
  EXPECT_TRUE(v->get("true")->is(Kind::Bool) && v->get("true")->boolean);
  EXPECT_TRUE(v->get("false")->is(Kind::Bool) && !v->get("false")->boolean);
  EXPECT_EQ(v->get("small")->integer, 7);
  EXPECT_EQ(v->get("byte")->integer, 255);
  EXPECT_EQ(v->get("i16")->integer, 40000);
  EXPECT_EQ(v->get("neg")->integer, -5);
  EXPECT_EQ(v->get("i32min")->integer, INT64_C(-2147483648));
  EXPECT_EQ(v->get("big")->integer, INT64_C(1) << 40);
  EXPECT_EQ(v->get("i64max")->integer, INT64_MAX);
  EXPECT_EQ(v->get("i64min")->integer, INT64_MIN);
  EXPECT_EQ(v->get("pi")->real, 3.25);
  EXPECT_EQ(v->get("tiny")->real, -1e-300);
  EXPECT_TRUE(std::isinf(v->get("inf")->real));
  EXPECT_EQ(v->get("text")->text, "h\xc3\xa9llo \xe2\x9c\x93 back\\slash\nnew line \xf0\x9f\x98\x80");
  ASSERT_TRUE(v->get("bytes")->is(Kind::Bytes));
  EXPECT_EQ(v->get("bytes")->text, std::string("\x00\xff" "ab\\", 5));
  EXPECT_TRUE(v->get("empty_bytes")->is(Kind::Bytes));
  EXPECT_EQ(v->get("empty_bytes")->text, "");
  const ValuePtr list = v->get("list");
  ASSERT_EQ(list->items.size(), 3u);
  EXPECT_EQ(list->items[1]->scalar_text(), "2,3");
  EXPECT_TRUE(list->items[2]->is(Kind::Tuple));
  EXPECT_EQ(list->items[2]->items[1]->text, "x");
  EXPECT_EQ(v->get("tuple5")->scalar_text(), "1,2,3,4,5");
  EXPECT_TRUE(v->get("empty_tuple")->is(Kind::Tuple));
  EXPECT_EQ(v->get("set")->scalar_text(), "7");
  const ValuePtr od = v->get("od");
  ASSERT_TRUE(od->is(Kind::Dict));
  ASSERT_EQ(od->entries.size(), 2u);
  EXPECT_EQ(od->entries[0].first->text, "a");
  EXPECT_EQ(od->get("b")->integer, 2);
  const ValuePtr ns = v->get("ns");  // recorded, never constructed (protocols 0/1: copyreg._reconstructor)
  ASSERT_TRUE(ns->is(Kind::Object));
  EXPECT_EQ(ns->module + "." + ns->name, "argparse.Namespace");
  EXPECT_EQ(ns->attr("arch")->text, "transformer_lm");
  EXPECT_EQ(ns->attr("decoder_layers")->integer, 2);
  EXPECT_EQ(v->get("int_key")->entries.at(0).first->integer, 1);
  EXPECT_EQ(v->get("shared_1").get(), v->get("shared_2").get()) << "the memo keeps shared values shared";
}

INSTANTIATE_TEST_SUITE_P(Protocols, EveryProtocol, ::testing::Values(0, 1, 2, 3, 4, 5));

TEST(PickleMachine, CodeRunningPicklesAreRefusedByNameAndNothingRuns) {
  const struct {
    const char* file;
    const char* refused;
  } cases[] = {{"evil_reduce_p2.pkl", "posix.system"},   {"evil_reduce_p4.pkl", "posix.system"},
               {"evil_reduce_p0.pkl", "posix.system"},   {"evil_subprocess.pkl", "subprocess.call"},
               {"evil_eval.pkl", "builtins.eval"},       {"evil_getattr.pkl", "builtins.__import__"},
               {"evil_inst.pkl", "os.system"},           {"evil_obj.pkl", "posix.system"},
               {"evil_popen.pkl", "subprocess.Popen"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string err = error_of(slurp(fixture(std::string("reader/") + c.file)));
    EXPECT_CONTAINS(err, std::string("refusing to run ") + c.refused);
    EXPECT_CONTAINS(err, "at byte");
  }
  std::istringstream markers(slurp(fixture("reader/evil_markers.txt")));
  int n = 0;
  for (std::string m; std::getline(markers, m);) {
    if (m.empty()) continue;
    ++n;
    EXPECT_FALSE(std::filesystem::exists(m)) << m << " exists: a payload ran";
  }
  EXPECT_EQ(n, 9);
}

TEST(PickleMachine, UnknownClassesAreRecordedNotCalled) {
  // mymod.Thing(1, 'a') then BUILD {'x': 2}: an Object with its arguments and state.
  const ValuePtr v = parse("\x80\x02"s "cmymod\nThing\n"s "K\x01X\x01\x00\x00\x00"s "a\x86R"s "}X\x01\x00\x00\x00xK\x02sb."s);
  ASSERT_TRUE(v->is(Kind::Object));
  EXPECT_EQ(v->module + "." + v->name, "mymod.Thing");
  EXPECT_EQ(v->items.size(), 2u);
  EXPECT_EQ(v->attr("x")->integer, 2);
  // numpy scalars (fairseq's metrics) become numbers: numpy.float64(0.5), numpy.int64(-3)
  const ValuePtr f = parse("\x80\x02"s "cnumpy.core.multiarray\nscalar\n"s "cnumpy\ndtype\nX\x02\x00\x00\x00"s "f8\x89\x88\x87R"s
                           "(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s
                           "C\x08\x00\x00\x00\x00\x00\x00\xe0?\x86R."s);
  ASSERT_TRUE(f->is(Kind::Float)) << f->describe();
  EXPECT_EQ(f->real, 0.5);
  const ValuePtr i = parse("\x80\x02"s "cnumpy.core.multiarray\nscalar\n"s "cnumpy\ndtype\nX\x02\x00\x00\x00"s "i8\x89\x88\x87R"s
                           "C\x08\xfd\xff\xff\xff\xff\xff\xff\xff\x86R."s);
  ASSERT_TRUE(i->is(Kind::Int)) << i->describe();
  EXPECT_EQ(i->integer, -3);
}

TEST(PickleMachine, ErrorsNameTheOpcodeAndOffset) {
  EXPECT_EQ(error_of("\x80\x02]K\x01K\x02\x86"s "a."s), "");  // list.append((1, 2)) is fine
  EXPECT_CONTAINS(error_of("\x80\x02K\x01K\x02"s "a."s), "APPEND, opcode 0x61 at byte 6"s);
  EXPECT_CONTAINS(error_of("\x80\x02h\x05."s), "memo key 5 was never stored (BINGET, opcode 0x68 at byte 2)"s);
  EXPECT_CONTAINS(error_of("\x80\x02X\xff\xff\xff\x00"s "abc."s), "truncated"s);
  EXPECT_CONTAINS(error_of("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff."s), "exceeds the limit"s);
  EXPECT_CONTAINS(error_of("\x80\x02\x8b\x00\x00\x01\x00."s), "does not fit 64 bits"s);
  EXPECT_CONTAINS(error_of("\x80\x02\xff."s), "unknown opcode"s);
  EXPECT_CONTAINS(error_of("\x80\x05\x97."s), "out-of-band buffers"s);
  EXPECT_CONTAINS(error_of("\x80\x02\x82\x01."s), "extension registry"s);
  EXPECT_CONTAINS(error_of("\x80\x02K\x01K\x02."s), "STOP with 2 values"s);
  EXPECT_CONTAINS(error_of("\x80\x02."s), "STOP with 0 values"s);
  EXPECT_CONTAINS(error_of("\x80\x02K\x01"s), "truncated"s);
  EXPECT_CONTAINS(error_of("I12x\n."), "bad or too large integer");
  EXPECT_CONTAINS(error_of("L123456789012345678901234567890L\n."), "bad or too large integer");
  EXPECT_CONTAINS(error_of("N}g99999999999999999999999999\n."), "bad memo key");
  EXPECT_CONTAINS(error_of("N}p-1\n."), "bad memo key");
  EXPECT_CONTAINS(error_of("Fnot-a-float\n."), "bad float");
  EXPECT_CONTAINS(error_of("S'unterminated\n."), "bad quoted string");
  EXPECT_CONTAINS(error_of("Vbad \\u12\n."), "raw-unicode-escape");
  EXPECT_CONTAINS(error_of("\x80\x02"s "cbuiltins\nset\nK\x01"s "b."s), "BUILD on the class builtins.set"s);
  EXPECT_CONTAINS(error_of("(Pabc\n."), "text persistent ids");
  EXPECT_CONTAINS(error_of("\x80\x02K\x01Q."s), "unsupported persistent id"s);
  EXPECT_CONTAINS(error_of("\x80\x02"s "csubprocess\nPopen\n)\x81."s), "(NEWOBJ, opcode 0x81 at byte 21)"s);
  // torch's persistent ids: a storage type the reader does not know
  EXPECT_CONTAINS(error_of("\x80\x02(X\x07\x00\x00\x00storagectorch\nQInt8Storage\nX\x01\x00\x00\x00"s "0NK\x04tQ."s),
                  "unknown storage type 'QInt8Storage'");
  EXPECT_CONTAINS(error_of("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"s "0NJ\xff\xff\xff\xfftQ."s),
                  "negative storage size");
}

TEST(PickleMachine, HostileStructuresFailFastWithoutCrashing) {
  // a million nested 1-tuples: too deep (and destroying it must not recurse either)
  EXPECT_CONTAINS(error_of("\x80\x02N"s + std::string(1000000, '\x85') + "."s), "nested deeper than the limit"s);
  // a million open MARKs
  EXPECT_CONTAINS(error_of("\x80\x02"s + std::string(1000000, '(') + "."s), "nesting deeper than the limit"s);
  // a list that contains itself (pickle can express cycles; a checkpoint never has one)
  EXPECT_CONTAINS(error_of("\x80\x02]q\x00h\x00"s "a."s), "self-referencing"s);
  EXPECT_CONTAINS(error_of("\x80\x02}q\x00X\x01\x00\x00\x00kh\x00s."s), "self-referencing"s);
  // exponential sharing: t(i+1) = (ti, ti), 60 levels = 2^60 paths but only 61 values; walking
  // it, printing it in an error message, and using it as a persistent id all stay linear
  std::string dag = "\x80\x02K\x01"s;
  for (int i = 0; i < 60; ++i) dag += "2\x86"s;  // DUP, TUPLE2
  const ValuePtr v = parse(dag + ".");
  EXPECT_EQ(v->items.size(), 2u);
  EXPECT_LE(v->describe().size(), 90u);
  EXPECT_LE(v->scalar_text(1000).size(), 1010u);
  EXPECT_CONTAINS(error_of(dag + "Q."), "unsupported persistent id");
  // a deep list is fine up to the limit, and refused past it
  Limits small;
  small.max_depth = 50;
  std::string nest = "\x80\x02"s;
  for (int i = 0; i < 49; ++i) nest += "]";
  for (int i = 0; i < 48; ++i) nest += "a";
  EXPECT_NO_THROW(parse(nest + ".", small));
  EXPECT_CONTAINS(error_of("\x80\x02]]]]a"s "aa."s, Limits{3, 100, 100, 100}), "nested deeper than the limit of 3"s);
  EXPECT_CONTAINS(error_of("\x80\x02X\x05\x00\x00\x00"s "abcde."s, Limits{10, 10, 4, 100}), "exceeds the limit"s);
  EXPECT_CONTAINS(error_of("\x80\x02Nq\x01q\x02q\x03."s, Limits{10, 2, 100, 100}), "memo too large"s);
  // a copy bomb: a 100 000-item list, then list(it) a million times
  // (4 input bytes each): refused once the copies add up (here 10^6 values, by default 2^26),
  // instead of allocating 10^11 values
  Limits copies_limit;
  copies_limit.max_copied = 1'000'000;
  std::string copies = "\x80\x02]q\x00("s + std::string(100000, 'N') + "e0cbuiltins\nlist\nq\x01"s;
  for (int i = 0; i < 1000000; ++i) copies += "h\x01h\x00\x85R0"s;
  EXPECT_CONTAINS(error_of(copies + "N."s, copies_limit), "a memory bomb");
  // BUILD of a dict with itself as the state (found by the fuzzer: merging it into itself read freed memory)
  EXPECT_CONTAINS(error_of("\x80\x02}q\x00K\x01K\x02sh\x00"s "b."s), "self-referencing");
  // tuple(t) and bytes(b) of immutable values share them, so they cost nothing
  const ValuePtr shared = parse("\x80\x02"s "cbuiltins\ntuple\nK\x01K\x02\x86\x85R."s);
  EXPECT_EQ(shared->scalar_text(), "1,2");
}

}  // namespace
