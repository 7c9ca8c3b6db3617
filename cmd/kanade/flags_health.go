package main

import (
	"fmt"
	"strconv"

	"github.com/kanade-go/kanade/node"
)

// healthFlags declares the flags of the health rollup (GET /api/health/fleet).
func healthFlags(f *flags) func(*node.Options) error {
	minActive := f.String("health-min-active", "0.5", "fraction of known agents that must be active for health/fleet to be ok (0 = upstream's rule: degraded only when none is)")
	return func(o *node.Options) error {
		v, err := strconv.ParseFloat(*minActive, 64)
		if err != nil || v < 0 || v > 1 {
			return fmt.Errorf("--health-min-active %q: want a fraction from 0 to 1", *minActive)
		}
		if v == 0 {
			v = -1 // health.Checker: negative keeps upstream's rule
		}
		o.HealthDegradedBelow = v
		return nil
	}
}
