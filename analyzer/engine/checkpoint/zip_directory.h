// The record sizes a zip archive's central directory claims, read with bounds checks and
// independently of LibTorch's archive reader: that reader allocates whatever size a record claims
// before it finds the data missing, so implausible sizes are refused before it runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace decayfw::engine {

struct ZipRecord {
  std::string name;
  uint16_t method = 0;  // 0 stored (what torch.save writes), 8 deflated
  uint64_t compressed = 0, uncompressed = 0;
};

// The central directory's records (zip64 sizes included). False when there is no well-formed
// end-of-central-directory record; the archive reader then reports the damage itself.
bool read_zip_directory(const uint8_t* data, size_t size, std::vector<ZipRecord>& records);

// The first record whose uncompressed size this file cannot hold (stored: larger than the file;
// deflated: beyond deflate's maximum ratio); null when all are plausible.
const ZipRecord* implausible_zip_record(const std::vector<ZipRecord>& records, size_t file_size);

}  // namespace decayfw::engine
