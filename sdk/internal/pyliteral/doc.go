// Package pyliteral parses Python literal reprs into an ordered tree.
//
// # Overview
//
// FlexTok checkpoints store their configuration in the safetensors
// "__metadata__" as str(v) of each top-level config value: Python dicts,
// lists, tuples, strings, numbers, True, False and None. The official loader
// reads each value back with ast.literal_eval and keeps the raw string when
// that fails (for example the bare class path of "_target_").
//
// [Parse] accepts exactly what ast.literal_eval accepts for such values
// (Python 3.11): str and bytes literals with every prefix, quote style and
// escape except \N{...}, adjacent-literal concatenation, int (decimal up to
// 4300 digits, hex, octal, binary, underscores; arbitrary size), float
// (1e-05, .5, 1_0.0, overflow to inf), complex (1j, 1+2j), one unary sign,
// tuples, lists, dicts, sets, set(), and nesting up to 200 levels. Dict key
// order is preserved (Go maps do not), duplicate keys keep their first
// position and take the last value, and unhashable keys are rejected, all
// as Python does.
//
// Bare inf and nan, which repr produces for non-finite floats, are names
// that ast.literal_eval rejects, so the official loader keeps such a value as
// a plain string. [Parse] does the same unless [Options.AllowNonFinite] is set.
//
// [ParseOrString] is the loader's rule: the parsed tree, or the raw text as a
// [Str] value when parsing fails.
//
// [Value.String] prints a value as Python's repr would, so
// Parse(v.String()) gives back an equal tree.
package pyliteral
