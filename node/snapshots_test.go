package node

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
)

// The node warns when --retention outlives the RESULTS stream (30 days by
// the contract), and not when the stream holds as long.
func TestWarnRetention(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	for _, c := range []struct {
		retention time.Duration
		snapshots bool
		want      string
	}{
		{90 * 24 * time.Hour, true, "only from a snapshot"},
		{0, false, "snapshots are off"},
		{7 * 24 * time.Hour, true, ""},
	} {
		var buf bytes.Buffer
		warnRetention(context.Background(), js, slog.New(slog.NewTextHandler(&buf, nil)), c.retention, c.snapshots)
		got := buf.String()
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("retention %v: logged %q, want %q", c.retention, got, c.want)
		}
	}
}
