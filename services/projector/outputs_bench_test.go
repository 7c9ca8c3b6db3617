package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// scriptOutput is the stdout of an inventory or patch script on one PC:
// timestamped lines of the same few shapes with the PC's own numbers,
// names and ids, 300 B to 3 KiB (about 1 KiB on average), as agents send
// them. rng makes it reproducible.
func scriptOutput(rng *rand.Rand, pc string) string {
	var b strings.Builder
	ts := time.Date(2026, 5, 16, 8, rng.IntN(60), rng.IntN(60), 0, time.UTC)
	line := func(level, format string, args ...any) {
		ts = ts.Add(time.Duration(rng.IntN(900)) * time.Millisecond)
		fmt.Fprintf(&b, "%s %-5s %s\r\n", ts.Format("2006-01-02 15:04:05.000"), level, fmt.Sprintf(format, args...))
	}
	line("INFO", "kanade inventory 2.4.1 on %s (Windows 11 Pro 23H2, build 22631.%d)", pc, 3000+rng.IntN(600))
	for _, d := range []string{"C:", "D:"}[:1+rng.IntN(2)] {
		total := 238.0 + float64(rng.IntN(4))*238.5
		free := total * rng.Float64()
		line("INFO", "disk %s free %.1f GB of %.1f GB (%.1f %%)", d, free, total, 100*free/total)
	}
	services := []string{"wuauserv", "BITS", "WinDefend", "Spooler", "Dnscache", "EventLog", "LanmanWorkstation", "W32Time"}
	for _, s := range services[:3+rng.IntN(len(services)-2)] {
		state := "Running"
		if rng.IntN(20) == 0 {
			state = "Stopped"
		}
		line("INFO", "service %-18s %-8s pid %5d start Automatic", s, state, 400+rng.IntN(30000))
	}
	for range rng.IntN(12) {
		kb := 5030000 + rng.IntN(9000)
		line("INFO", "update KB%d installed %s (%d MB)", kb, ts.AddDate(0, 0, -rng.IntN(90)).Format("2006-01-02"), 1+rng.IntN(900))
	}
	if rng.IntN(100) == 0 {
		line("ERROR", "update KB5034441 failed: 0x80070643 (ERROR_INSTALL_FAILURE)")
	}
	if rng.IntN(10) == 0 {
		line("WARN", "reboot pending since %s (session %d, user CORP\\u%05d)", ts.Add(-time.Duration(rng.IntN(72))*time.Hour).Format(time.RFC3339), rng.IntN(9), rng.IntN(99999))
	}
	line("INFO", "done in %d ms, exit 0", 200+rng.IntN(20000))
	return b.String()
}

// BenchmarkOutputs compares plain and compressed outputs on realistic
// script output: bytes per result in the RESULTS stream and in SQLite (file
// size after a checkpoint, indexes included), the projector's rate
// replaying the stream into an empty database, a stdout regex search over
// every row (a rare literal, and a case-insensitive pattern) and the
// compression of an existing plain database. Variants run side by side in
// each round; medians are printed. KANADE_BENCH_OUTPUTS_N sets the size
// (default 20,000), KANADE_BENCH_ROUNDS the rounds (default 3).
//
//	go test -run '^$' -bench Outputs -benchtime 1x -timeout 30m ./services/projector
func BenchmarkOutputs(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("KANADE_BENCH_OUTPUTS_N")); err == nil && v > 0 {
		n = v
	}
	node := nodetest.Start(b)
	js := node.JetStream(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var outBytes int
	for i := range n {
		r := genResult(i, 100, nil, benchID)
		r.Stdout = scriptOutput(rng, r.PCID)
		outBytes += len(r.Stdout)
		body, _ := json.Marshal(r)
		if _, err := js.PublishAsync(wire.Results(r.RequestID), body); err != nil {
			b.Fatal(err)
		}
		if i%2000 == 1999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	str, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		b.Fatal(err)
	}
	streamBytes := float64(str.CachedInfo().State.Bytes) / float64(n)
	fmt.Printf("%d results, stdout %.0f bytes on average; RESULTS stream %.0f bytes per result\n", n, float64(outBytes)/float64(n), streamBytes)

	type figs struct{ rate, bytes, lit, fold, migrate []float64 }
	res := map[string]*figs{"plain": {}, "compressed": {}}
	dir := b.TempDir()
	for round := range benchRounds() {
		for _, variant := range []string{"plain", "compressed"} {
			f := res[variant]
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.db", variant, round))
			db, err := store.Open(ctx, path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			p, err := Start(ctx, Options{Conn: node.Conn(b), DB: db, NodeName: fmt.Sprintf("bench_%s_%d", variant, round),
				Logger: node.Logger, NoService: true, PlainOutputs: variant == "plain", RebuildMin: -1})
			if err != nil {
				b.Fatal(err)
			}
			for p.streams[0].applied.Load() < uint64(n) {
				time.Sleep(5 * time.Millisecond)
			}
			f.rate = append(f.rate, float64(n)/time.Since(start).Seconds())
			p.Stop()
			if _, err := db.W.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				b.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			f.bytes = append(f.bytes, float64(st.Size())/float64(n))
			// The list's own conditions for a stdout regex (services/results):
			// the literal pre-test, which a compressed value skips, then REGEXP.
			search := func(cond, arg, re string) float64 {
				t0 := time.Now()
				var hits int
				if err := db.R.QueryRowContext(ctx, `SELECT count(*) FROM execution_results WHERE (typeof(stdout) = 'blob' OR `+cond+`)
					AND stdout REGEXP ?`, arg, re).Scan(&hits); err != nil {
					b.Fatal(err)
				}
				if hits == 0 {
					b.Fatalf("%s: no hits", re)
				}
				return float64(time.Since(t0).Microseconds()) / 1000
			}
			f.lit = append(f.lit, search(`instr(stdout, ?) > 0`, "KB5034441 failed", `KB5034441 failed: 0x8007[0-9a-f]{4}`))
			f.fold = append(f.fold, search(`stdout LIKE ? ESCAPE '\'`, "%reboot pending%", `(?i)reboot pending.*user corp\\u000`))
			if variant == "plain" {
				t0 := time.Now()
				if err := db.CompressOutputs(ctx, 500, nil, node.Logger, nil); err != nil {
					b.Fatal(err)
				}
				f.migrate = append(f.migrate, float64(n)/time.Since(t0).Seconds())
			}
			db.Close()
			os.Remove(path)
		}
	}
	med := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	pl, co := res["plain"], res["compressed"]
	fmt.Printf("%-40s %12s %12s %8s\n", "medians of "+strconv.Itoa(benchRounds())+" rounds", "plain", "compressed", "ratio")
	row := func(what string, p, c float64) { fmt.Printf("%-40s %12.1f %12.1f %7.2fx\n", what, p, c, c/p) }
	row("SQLite bytes per result", med(pl.bytes), med(co.bytes))
	row("projector replay, results/s", med(pl.rate), med(co.rate))
	row("stdout regex, rare literal, ms", med(pl.lit), med(co.lit))
	row("stdout regex, case-insensitive, ms", med(pl.fold), med(co.fold))
	fmt.Printf("%-40s %12.1f\n", "RESULTS stream bytes per result", streamBytes)
	fmt.Printf("%-40s %12.0f\n", "compress an existing db, rows/s", med(pl.migrate))
	fmt.Printf("raw: plain %v\n     compressed %v\n", *pl, *co)
}
