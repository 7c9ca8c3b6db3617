package main

import (
	"testing"
	"time"

	"github.com/kanade-go/kanade/node"
)

func TestRetentionFlag(t *testing.T) {
	for _, c := range []struct {
		env, arg string
		want     time.Duration
		bad      bool
	}{
		{want: 90 * 24 * time.Hour},
		{arg: "30d", want: 30 * 24 * time.Hour},
		{arg: "720h", want: 720 * time.Hour},
		{arg: "off", want: 0},
		{env: "7d", want: 7 * 24 * time.Hour},
		{env: "7d", arg: "1d", want: 24 * time.Hour},
		{arg: "ninety", bad: true},
		{env: "-1d", bad: true},
	} {
		t.Setenv("KANADE_RETENTION", c.env) // empty counts as unset
		f := newFlags("serve")
		apply := projectorFlags(f)
		var args []string
		if c.arg != "" {
			args = []string{"--retention", c.arg}
		}
		err := f.parse(args)
		if c.bad {
			if err == nil {
				t.Errorf("env %q arg %q: accepted", c.env, c.arg)
			}
			continue
		}
		if err != nil {
			t.Errorf("env %q arg %q: %v", c.env, c.arg, err)
			continue
		}
		var o node.Options
		apply(&o)
		if o.Projector.Retention != c.want {
			t.Errorf("env %q arg %q: retention %v, want %v", c.env, c.arg, o.Projector.Retention, c.want)
		}
	}
}
