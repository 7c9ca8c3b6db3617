package store

import (
	"bytes"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"modernc.org/sqlite"
)

// Outputs (execution_results.stdout and .stderr) are stored either plain,
// as TEXT, or zstd-compressed, as a BLOB holding one zstd frame of the
// UTF-8 text; SQLite keeps each value's type, so both live in one column
// and a database can be migrated row by row. Readers never see the
// difference:
//
//   - Output scans either form into a string;
//   - `x REGEXP p` decompresses a compressed x before matching;
//   - the SQL functions output(x) and output_size(x) give the text and its
//     size in bytes of either form (output_size reads only the frame
//     header);
//   - stdout_preview and stderr_preview (migration 1701) hold, for a
//     compressed output, its first PreviewBytes (256) bytes cut on a UTF-8
//     boundary, plain, so lists need not decompress; NULL for a plain
//     output, which is its own preview: COALESCE(stdout_preview, stdout).
const (
	// CompressMin is the smallest output worth compressing: below it the
	// frame's header costs more than it saves.
	CompressMin = 128
	// PreviewBytes is the length of the plain preview kept beside a
	// compressed output.
	PreviewBytes = 256
	// maxOutput bounds what one compressed value may expand to.
	maxOutput = 64 << 20
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
		zstd.WithZeroFrames(true), zstd.WithSingleSegment(true))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxOutput), zstd.WithDecoderConcurrency(0))
	bufs       = sync.Pool{New: func() any { return new([]byte) }}
)

// EncodeOutput is the value to store for an output: a zstd frame ([]byte)
// when that is at most 90 % of the text, else the text itself. preview is
// the plain preview to store beside a frame, nil beside plain text.
func EncodeOutput(s string) (value, preview any) {
	if len(s) < CompressMin {
		return s, nil
	}
	z := CompressOutput(s)
	if len(z) > len(s)*9/10 {
		return s, nil
	}
	return z, Preview(s, PreviewBytes)
}

// CompressOutput is s as one zstd frame, whatever its size (EncodeOutput
// decides whether that is worth it).
func CompressOutput(s string) []byte {
	return encoder.EncodeAll([]byte(s), make([]byte, 0, len(s)/3+16))
}

// Preview is s cut to at most n bytes on a UTF-8 boundary.
func Preview(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// IsCompressed reports whether a stored value is a zstd frame.
func IsCompressed(b []byte) bool { return bytes.HasPrefix(b, zstdMagic) }

// DecodeOutput turns a stored output of either form into its text.
func DecodeOutput(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case []byte:
		if !IsCompressed(x) {
			return string(x), nil
		}
		out, err := decoder.DecodeAll(x, nil)
		if err != nil {
			return "", fmt.Errorf("decompress output: %w", err)
		}
		return string(out), nil
	}
	return fmt.Sprint(v), nil
}

// withOutput calls fn with the text of a stored output, decompressed into
// a pooled buffer that is only valid during fn.
func withOutput(b []byte, fn func([]byte)) error {
	if !IsCompressed(b) {
		fn(b)
		return nil
	}
	p := bufs.Get().(*[]byte)
	out, err := decoder.DecodeAll(b, (*p)[:0])
	if err != nil {
		bufs.Put(p)
		return fmt.Errorf("decompress output: %w", err)
	}
	fn(out)
	if cap(out) <= 1<<20 {
		*p = out
		bufs.Put(p)
	}
	return nil
}

// OutputSize is the size in bytes of the text of a stored output, from
// the frame header for a compressed one.
func OutputSize(v any) (int64, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case string:
		return int64(len(x)), nil
	case []byte:
		if !IsCompressed(x) {
			return int64(len(x)), nil
		}
		var h zstd.Header
		if err := h.Decode(x); err == nil && h.HasFCS {
			return int64(h.FrameContentSize), nil
		}
		s, err := DecodeOutput(x)
		return int64(len(s)), err
	}
	return int64(len(fmt.Sprint(v))), nil
}

// Output is a string that scans a stored output of either form.
type Output string

// Scan implements sql.Scanner.
func (o *Output) Scan(v any) error {
	s, err := DecodeOutput(v)
	*o = Output(s)
	return err
}

var errOutputArg = errors.New("output: one argument")

// registerOutputFunctions registers output(x) and output_size(x); called
// from the package's init, beside regexp.
func registerOutputFunctions() {
	sqlite.MustRegisterDeterministicScalarFunction("output", 1, func(ctx *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		if len(args) != 1 {
			return nil, errOutputArg
		}
		if args[0] == nil {
			return nil, nil
		}
		return DecodeOutput(args[0])
	})
	sqlite.MustRegisterDeterministicScalarFunction("output_size", 1, func(ctx *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		if len(args) != 1 {
			return nil, errOutputArg
		}
		if args[0] == nil {
			return nil, nil
		}
		return OutputSize(args[0])
	})
}
