package store

import (
	"bytes"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"

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
//     compressed output, its first PreviewChars (200) characters, plain,
//     so lists need not decompress; NULL for a plain output, which is its
//     own preview: substr(COALESCE(stdout_preview, stdout), 1, n) is the
//     same text for any n up to PreviewChars.
const (
	// CompressMin is the smallest output worth compressing: below it the
	// frame's header costs more than it saves.
	CompressMin = 128
	// PreviewChars is the length, in characters, of the plain preview
	// kept beside a compressed output: what a list shows (results.PreviewChars).
	PreviewChars = 200
	// maxOutput bounds what one compressed value may expand to; a longer
	// output is stored plain, so every stored frame can be read back.
	maxOutput = 256 << 20
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
	if len(s) < CompressMin || len(s) > maxOutput {
		return s, nil
	}
	z := CompressOutput(s)
	if len(z) > len(s)*9/10 {
		return s, nil
	}
	return z, Preview(s, PreviewChars)
}

// CompressOutput is s as one zstd frame, whatever its size (EncodeOutput
// decides whether that is worth it).
func CompressOutput(s string) []byte {
	return encoder.EncodeAll([]byte(s), make([]byte, 0, len(s)/3+16))
}

// Preview is s cut to at most n characters (runes).
func Preview(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
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

// OutputSubstr is SQLite's substr(CAST(text AS BLOB), start, n) of a
// stored output's text (n < 0: no length given), reading a compressed one
// only as far as the slice ends.
func OutputSubstr(v any, start, n int64) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok || !IsCompressed(b) {
		var text []byte
		switch x := v.(type) {
		case string:
			text = []byte(x)
		case []byte:
			text = x
		case nil:
		default:
			text = []byte(fmt.Sprint(v))
		}
		lo, hi := substrRange(int64(len(text)), start, n)
		return bytes.Clone(text[lo:hi]), nil
	}
	size, err := OutputSize(b)
	if err != nil {
		return nil, err
	}
	lo, hi := substrRange(size, start, n)
	if hi <= lo {
		return []byte{}, nil
	}
	dec := streamDecoders.Get().(*zstd.Decoder)
	defer streamDecoders.Put(dec)
	if err := dec.Reset(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("decompress output: %w", err)
	}
	if _, err := io.CopyN(io.Discard, dec, lo); err != nil {
		return nil, fmt.Errorf("decompress output: %w", err)
	}
	out := make([]byte, hi-lo)
	if _, err := io.ReadFull(dec, out); err != nil {
		return nil, fmt.Errorf("decompress output: %w", err)
	}
	return out, nil
}

var streamDecoders = sync.Pool{New: func() any {
	d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxOutput))
	return d
}}

// substrRange is the [lo, hi) byte range SQLite's substr(X, p1, p2) takes
// of a value of size bytes, as its func.c computes it (p2 noLength: the
// call gave no length).
func substrRange(size, p1, p2 int64) (lo, hi int64) {
	negP2 := false
	if p2 == noLength {
		p2 = 1 << 40 // SQLite uses its length limit
	} else if p2 < 0 {
		p2, negP2 = -p2, true
	}
	if p1 < 0 {
		p1 += size
		if p1 < 0 {
			p2 += p1
			if p2 < 0 {
				p2 = 0
			}
			p1 = 0
		}
	} else if p1 > 0 {
		p1--
	} else if p2 > 0 {
		p2--
	}
	if negP2 {
		p1 -= p2
		if p1 < 0 {
			p2 += p1
			p1 = 0
		}
	}
	if p1 > size {
		return size, size
	}
	if p1+p2 > size {
		p2 = size - p1
	}
	return p1, p1 + p2
}

// noLength is output_substr's n when the call gave none.
const noLength = -1 << 62

// SQL for an output column col of either form, for queries that read
// outputs: its text, its size in bytes, and substr(CAST(text AS BLOB),
// start, n) (n "" for none). A plain value stays with SQLite's own
// functions; only a compressed one goes to Go.
func OutputTextSQL(col string) string {
	return "CASE WHEN typeof(" + col + ") = 'blob' THEN output(" + col + ") ELSE " + col + " END"
}

func OutputSizeSQL(col string) string {
	return "CASE WHEN typeof(" + col + ") = 'blob' THEN output_size(" + col + ") ELSE octet_length(" + col + ") END"
}

func OutputSubstrSQL(col, start, n string) string {
	args := start
	if n != "" {
		args += ", " + n
	}
	return "CASE WHEN typeof(" + col + ") = 'blob' THEN output_substr(" + col + ", " + args + ") ELSE substr(CAST(" + col + " AS BLOB), " + args + ") END"
}

// registerOutputFunctions registers output(x), output_size(x) and
// output_substr(x, start[, n]); called from the package's init, beside
// regexp.
func registerOutputFunctions() {
	sqlite.MustRegisterDeterministicScalarFunction("output_substr", -1, func(ctx *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		if len(args) != 2 && len(args) != 3 {
			return nil, errors.New("output_substr: two or three arguments")
		}
		if args[0] == nil {
			return nil, nil
		}
		start, ok := args[1].(int64)
		if !ok {
			return nil, errors.New("output_substr: start must be an integer")
		}
		n := int64(noLength)
		if len(args) == 3 {
			if n, ok = args[2].(int64); !ok {
				return nil, errors.New("output_substr: length must be an integer")
			}
		}
		return OutputSubstr(args[0], start, n)
	})
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
