package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-go/kanade/node"
)

// projectorFlags declares the projector flags of serve.
func projectorFlags(f *flags) func(*node.Options) {
	const name = "retention"
	r := retention(90 * 24 * time.Hour)
	if v := f.envDefault(name, ""); v != "" {
		if err := r.Set(v); err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q: %v", envName(name), v, err))
		}
	}
	f.FlagSet.Var(&r, name, `delete results, executions and rejects older than this (e.g. 90d, 720h; 0 or "off" keeps everything) (env `+envName(name)+`)`)
	return func(o *node.Options) {
		o.Projector.Retention = time.Duration(r)
	}
}

// retention is a duration that also accepts whole days ("90d").
type retention time.Duration

func (r *retention) String() string {
	d := time.Duration(*r)
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (r *retention) Set(s string) error {
	s = strings.TrimSpace(s)
	switch {
	case s == "off" || s == "0":
		*r = 0
		return nil
	case strings.HasSuffix(s, "d"):
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a duration like 90d or 720h")
		}
		*r = retention(time.Duration(n * float64(24*time.Hour)))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration like 90d or 720h")
	}
	*r = retention(d)
	return nil
}
