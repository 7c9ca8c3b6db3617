package health

import "testing"

// The rollup's order, with the majority rule and with upstream's
// blackout-only rule (DegradedBelow < 0).
func TestRollup(t *testing.T) {
	ok := JetStreamRoll{AllOK: true}
	for _, c := range []struct {
		below  float64
		js     JetStreamRoll
		agents AgentCounts
		want   string
	}{
		{0, JetStreamRoll{Missing: []string{"jobs"}}, AgentCounts{Known: 4, Active: 4}, StatusDegraded},
		{0, ok, AgentCounts{}, StatusUnknown},
		{0, ok, AgentCounts{Known: 4, Active: 0}, StatusDegraded},
		{0, ok, AgentCounts{Known: 4, Active: 1}, StatusDegraded},
		{0, ok, AgentCounts{Known: 4, Active: 2}, StatusOK},
		{-1, ok, AgentCounts{Known: 4, Active: 1}, StatusOK},
		{-1, ok, AgentCounts{Known: 4, Active: 0}, StatusDegraded},
		{0.9, ok, AgentCounts{Known: 10, Active: 8}, StatusDegraded},
	} {
		c2 := &Checker{DegradedBelow: c.below}
		if got := c2.rollup(Fleet{JetStream: c.js, Agents: c.agents}); got != c.want {
			t.Errorf("below=%v js=%v agents=%+v: %s, want %s", c.below, c.js.AllOK, c.agents, got, c.want)
		}
	}
}
