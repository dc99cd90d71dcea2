// Decoders for the text arguments of protocol 0 opcodes (UNICODE, STRING, INT, LONG, FLOAT, PUT,
// GET). Each returns false on malformed input instead of throwing, so the machine can report the
// opcode and offset.
#pragma once

#include <cstdint>
#include <string>

namespace decayfw::engine::pickle {

// UNICODE: Python's raw-unicode-escape (bytes < 256 are latin-1 characters, \uXXXX and
// \UXXXXXXXX escapes) → UTF-8.
bool decode_raw_unicode_escape(const std::string& in, std::string& utf8);

// STRING: a quoted Python 2 str repr ('abc', "it's", with \n \t \\ \' \xNN and octal escapes) → bytes.
bool decode_quoted_string(const std::string& in, std::string& out);

// INT / LONG: a decimal integer, optionally with Python 2's trailing 'L'; must fit 64 bits.
bool parse_decimal_int(std::string s, int64_t& out);

// PUT / GET: a non-negative decimal memo key.
bool parse_memo_key(const std::string& s, uint64_t& out);

// FLOAT: repr of a float (also inf / nan).
bool parse_float_text(const std::string& s, double& out);

}  // namespace decayfw::engine::pickle
