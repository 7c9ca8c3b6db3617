package scheduler

import (
	"testing"
	"time"
)

// The execution record's deadline_at is when the last run must have
// ended: start (the Command's deadline, else initiation plus jitter), then
// the run timeout and the reaper's margin.
func TestFireEndsBy(t *testing.T) {
	t0 := time.Date(2026, 5, 16, 12, 0, 0, 0, time.UTC)
	deadline := t0.Add(time.Hour)
	for _, c := range []struct {
		f       Fire
		timeout int64
		want    time.Time
	}{
		{Fire{InitiatedAt: t0}, 60, t0.Add(3 * time.Minute)},
		{Fire{InitiatedAt: t0, Jitter: 5 * time.Minute}, 600, t0.Add(5*time.Minute + 10*time.Minute + 5*time.Minute)},
		{Fire{InitiatedAt: t0, Jitter: 5 * time.Minute, DeadlineAt: &deadline}, 60, deadline.Add(3 * time.Minute)},
	} {
		if got := c.f.EndsBy(c.timeout); !got.Equal(c.want) {
			t.Errorf("%+v timeout %d: %v, want %v", c.f, c.timeout, got, c.want)
		}
	}
}
