package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

func scriptOutput(i int) string {
	var b strings.Builder
	for j := range 12 {
		fmt.Fprintf(&b, "[%02d] Checking service wuauserv on host PC%04d: running (pid %d)\r\n", j, i, 4000+i*7+j)
	}
	return b.String() + "ünïcödé ✓ done\n"
}

func TestEncodeOutput(t *testing.T) {
	for _, s := range []string{"", "short", scriptOutput(1), strings.Repeat("é", 5000)} {
		v, pre := EncodeOutput(s)
		z, compressed := v.([]byte)
		if compressed != (len(s) >= CompressMin) {
			t.Errorf("%d bytes: compressed %v", len(s), compressed)
		}
		if compressed {
			if len(z) >= len(s) {
				t.Errorf("%d bytes compressed to %d", len(s), len(z))
			}
			p := pre.(string)
			if !strings.HasPrefix(s, p) || !utf8.ValidString(p) || utf8.RuneCountInString(p) != min(utf8.RuneCountInString(s), PreviewChars) {
				t.Errorf("preview of %d bytes: %d bytes, valid %v", len(s), len(p), utf8.ValidString(p))
			}
		} else if pre != nil {
			t.Errorf("plain output with a preview")
		}
		back, err := DecodeOutput(v)
		if err != nil || back != s {
			t.Errorf("round trip of %d bytes: %d bytes, %v", len(s), len(back), err)
		}
		if n, err := OutputSize(v); err != nil || n != int64(len(s)) {
			t.Errorf("size of %d bytes: %d %v", len(s), n, err)
		}
	}
	// Random bytes do not compress: kept plain.
	var b strings.Builder
	x := uint32(1)
	for range 400 {
		x = x*1664525 + 1013904223
		b.WriteByte(byte('!' + x>>24%90))
	}
	if v, _ := EncodeOutput(b.String()); fmt.Sprintf("%T", v) != "string" {
		t.Error("incompressible output stored compressed")
	}
}

// The SQL side: REGEXP, output() and output_size() read both forms alike.
func TestOutputSQL(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	big := scriptOutput(7)
	for i, s := range []string{"plain ok", big} {
		v, pre := EncodeOutput(s)
		if _, err := db.W.ExecContext(ctx, `INSERT INTO execution_results (result_id, request_id, pc_id, recorded_at, stdout, stdout_preview)
			VALUES (?, 'r', 'PC1', '2026', ?, ?)`, fmt.Sprint("r", i), v, pre); err != nil {
			t.Fatal(err)
		}
	}
	var typ string
	db.R.QueryRow(`SELECT typeof(stdout) FROM execution_results WHERE result_id = 'r1'`).Scan(&typ)
	if typ != "blob" {
		t.Fatalf("big output stored as %s", typ)
	}
	for _, c := range []struct {
		re   string
		want string
	}{{`wuauserv on host PC0007`, "r1"}, {`^plain`, "r0"}, {`ünïcödé ✓ done\n$`, "r1"}, {`(?i)CHECKING.*pid 4049`, "r1"}} {
		var ids []string
		rows, err := db.R.Query(`SELECT result_id FROM execution_results WHERE stdout REGEXP ? ORDER BY result_id`, c.re)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		if strings.Join(ids, ",") != c.want {
			t.Errorf("REGEXP %q: %v, want %s", c.re, ids, c.want)
		}
	}
	var text string
	var size int64
	var head string
	var o Output
	if err := db.R.QueryRow(`SELECT output(stdout), output_size(stdout), substr(COALESCE(stdout_preview, stdout), 1, 10), stdout
		FROM execution_results WHERE result_id = 'r1'`).Scan(&text, &size, &head, &o); err != nil {
		t.Fatal(err)
	}
	if text != big || size != int64(len(big)) || head != big[:10] || string(o) != big {
		t.Fatalf("output() %d bytes, output_size %d, head %q, Output %d bytes; want %d", len(text), size, head, len(o), len(big))
	}
}

// The background job compresses every plain output, resumes after an
// interruption without redoing or skipping rows, and reads stay the same.
func TestCompressOutputsJob(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	want := map[string][2]string{}
	for i := range 230 {
		id := fmt.Sprintf("r%04d", i)
		out, errOut := scriptOutput(i), ""
		if i%3 == 0 {
			errOut = "warning: " + scriptOutput(i+1)
		}
		if i%10 == 0 {
			out = "tiny"
		}
		want[id] = [2]string{out, errOut}
		if _, err := db.W.ExecContext(ctx, `INSERT INTO execution_results (result_id, request_id, pc_id, recorded_at, stdout, stderr)
			VALUES (?, 'r', 'PC1', '2026', ?, ?)`, id, out, errOut); err != nil {
			t.Fatal(err)
		}
	}
	// Interrupted after two batches of 50.
	cctx, cancel := context.WithCancel(ctx)
	calls := 0
	err := db.CompressOutputs(cctx, 50, func() bool {
		calls++
		if calls > 2 {
			cancel()
		}
		return true
	}, discard(), nil)
	if err == nil {
		t.Fatal("an interrupted job returned nil")
	}
	var cursor string
	var rows int
	db.R.QueryRow(`SELECT cursor, rows FROM store_jobs WHERE name = ?`, JobCompressOutputs).Scan(&cursor, &rows)
	if cursor != "r0099" || rows != 100 {
		t.Fatalf("after two batches: cursor %q rows %d", cursor, rows)
	}
	var plain int
	db.R.QueryRow(`SELECT count(*) FROM execution_results WHERE typeof(stdout) = 'text' AND length(stdout) >= ?`, CompressMin).Scan(&plain)
	if plain != 230-23-90 {
		t.Fatalf("%d plain outputs left, want the 117 after the cursor", plain)
	}
	var last CompressProgress
	if err := db.CompressOutputs(ctx, 50, nil, discard(), func(p CompressProgress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.Rows != 230 || last.Total != 230 || last.Saved <= 0 {
		t.Fatalf("progress %+v", last)
	}
	db.R.QueryRow(`SELECT count(*) FROM execution_results WHERE typeof(stdout) = 'text' AND length(stdout) >= ?
		OR typeof(stderr) = 'text' AND length(stderr) >= ?`, CompressMin, CompressMin).Scan(&plain)
	if plain != 0 {
		t.Fatalf("%d plain outputs left after the job", plain)
	}
	var done, total int
	db.R.QueryRow(`SELECT done, rows FROM store_jobs WHERE name = ?`, JobCompressOutputs).Scan(&done, &total)
	if done != 1 || total != 230 {
		t.Fatalf("job done %d rows %d", done, total)
	}
	r, err := db.R.Query(`SELECT result_id, stdout, stderr FROM execution_results`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for r.Next() {
		var id string
		var out, errOut Output
		if err := r.Scan(&id, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if w := want[id]; string(out) != w[0] || string(errOut) != w[1] {
			t.Errorf("%s changed by the job", id)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// output_substr of a compressed value is exactly SQLite's substr of the
// text as a BLOB, for every start and length, and the SQL helpers read
// both forms alike.
func TestOutputSubstr(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	text := scriptOutput(3)
	z := CompressOutput(text)
	size := len(text)
	starts := []int64{0, 1, 2, 5, -1, -2, -7, int64(size), int64(size) + 1, int64(size) + 9, -int64(size), -int64(size) - 3, 300, -300}
	lens := []int64{noLength, 0, 1, 3, 17, -1, -4, int64(size), int64(size) * 2, -int64(size) - 5}
	for _, st := range starts {
		for _, n := range lens {
			var want []byte
			var err error
			if n == noLength {
				err = db.R.QueryRow(`SELECT substr(CAST(? AS BLOB), ?)`, text, st).Scan(&want)
			} else {
				err = db.R.QueryRow(`SELECT substr(CAST(? AS BLOB), ?, ?)`, text, st, n).Scan(&want)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := OutputSubstr(z, st, n)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("substr(%d, %d): %q, want %q", st, n, got, want)
			}
		}
	}
	for i, v := range []any{text, z} {
		if _, err := db.W.ExecContext(ctx, `INSERT INTO execution_results (result_id, request_id, pc_id, recorded_at, stdout)
			VALUES (?, 'r', 'PC1', '2026', ?)`, fmt.Sprint("s", i), v); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.R.Query(`SELECT ` + OutputTextSQL("stdout") + `, ` + OutputSizeSQL("stdout") + `, ` +
		OutputSubstrSQL("stdout", "3", "10") + `, ` + OutputSubstrSQL("stdout", "-12", "") + ` FROM execution_results ORDER BY result_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var all string
		var sz int64
		var mid, tail []byte
		if err := rows.Scan(&all, &sz, &mid, &tail); err != nil {
			t.Fatal(err)
		}
		if all != text || sz != int64(size) || string(mid) != text[2:12] || string(tail) != text[size-12:] {
			t.Errorf("row %d: %d bytes, size %d, mid %q, tail %q", n, len(all), sz, mid, tail)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d rows", n)
	}
}
