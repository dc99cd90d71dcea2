// What the pickle machine does instead of calling things. A pickle builds objects by calling
// globals (REDUCE, NEWOBJ, INST, OBJ); here nothing is ever called: the constructors torch and
// fairseq checkpoints use are interpreted structurally, any other class becomes an Object record,
// and globals that can only mean "run code" are refused outright.
#pragma once

#include <string>

#include "pickle_value.h"

namespace decayfw::engine::pickle {

// Python 2 module names that Python 3's pickle writes for protocols < 3 (fix_imports), mapped to
// their Python 3 names: __builtin__ → builtins, copy_reg → copyreg.
std::string canonical_module(const std::string& module);

// True for globals whose only use in a pickle is to execute code or touch the system
// (os.system, subprocess.Popen, builtins.eval/exec/getattr/open, …).
bool is_code_execution(const std::string& module, const std::string& name);

// The value a call of `callable` (a Global, or an Object for calls of call results) with the
// tuple `args` stands for. Throws PickleError (without position; the machine adds it) for a
// refused global or malformed arguments of a known constructor.
ValuePtr interpret_call(const ValuePtr& callable, const ValuePtr& args);

// The storage class name (e.g. "FloatStorage") → dtype; throws PickleError for unknown names.
at::ScalarType storage_dtype(const std::string& storage_class);

}  // namespace decayfw::engine::pickle
