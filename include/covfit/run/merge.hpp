// covfit merge: combine the shard files of one job (e.g. a Slurm array) into one file
// whose content equals a single-machine run of the whole job.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace covfit::run {

struct MergeSummary {
  std::int64_t tasks = 0, shards = 0;
};

// Checks that the inputs are shards of one job (same hash and format version, shard
// count N, each index 0..N-1 exactly once) and complete, then writes `output` (refused if
// it exists, unless overwrite). Throws InputError naming the offending file.
MergeSummary merge_shards(const std::vector<std::string>& inputs, const std::string& output,
                          bool overwrite);

}  // namespace covfit::run
