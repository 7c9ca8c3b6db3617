package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kanade-go/kanade/services/api"
)

const usage = `kanade: the kanade backend.

Usage:
  kanade serve [flags]   run a backend node (embedded NATS by default; --demo adds simulated agents)
  kanade sim [flags]     run simulated agents against a NATS (kanade sim -h)
  kanade run [flags]     run a script on one PC and print its result (kanade run -h)
  kanade nats-users      print NATS users for agents, operator, backend (--nats-config)
  kanade keygen [flags]  mint a command signing key; prints the agents' keyring entry
  kanade admin reset-password --user NAME   set an account's password from the host
  kanade version         print the version

Run "kanade serve -h" for the flags. Every flag has an environment twin
(KANADE_<FLAG>, e.g. --data-dir and KANADE_DATA_DIR).`

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return fmt.Errorf("a subcommand is required")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "sim":
		return simCmd(args[1:])
	case "run":
		return runCmd(args[1:], os.Stdout, os.Stderr)
	case "nats-users":
		return natsUsers(args[1:])
	case "keygen":
		return keygen(args[1:], os.Stdout)
	case "admin":
		return admin(args[1:])
	case "version", "--version", "-v":
		fmt.Println("kanade", api.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Println(usage)
		return nil
	}
	fmt.Fprintln(os.Stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// flags wraps a FlagSet so that every flag has an environment twin: the
// environment sets the default, the command line wins.
type flags struct {
	*flag.FlagSet
	errs []string
}

func newFlags(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &flags{FlagSet: fs}
}

func envName(flagName string) string {
	return "KANADE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *flags) envDefault(name, def string) string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		return v
	}
	return def
}

func (f *flags) String(name, def, usage string) *string {
	return f.FlagSet.String(name, f.envDefault(name, def), usage+" (env "+envName(name)+")")
}

func (f *flags) Int(name string, def int, usage string) *int {
	p := new(int)
	*p = def
	if v := f.envDefault(name, ""); v != "" {
		if _, err := fmt.Sscan(v, p); err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q: not an integer", envName(name), v))
		}
	}
	f.FlagSet.IntVar(p, name, *p, usage+" (env "+envName(name)+")")
	return p
}

func (f *flags) Duration(name string, def time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = def
	if v := f.envDefault(name, ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q: %v", envName(name), v, err))
		}
		*p = d
	}
	f.FlagSet.DurationVar(p, name, *p, usage+" (env "+envName(name)+")")
	return p
}

func (f *flags) Bool(name string, def bool, usage string) *bool {
	p := new(bool)
	*p = def
	if v := f.envDefault(name, ""); v != "" {
		*p = v == "1" || strings.EqualFold(v, "true") || strings.EqualFold(v, "yes")
	}
	f.FlagSet.BoolVar(p, name, *p, usage+" (env "+envName(name)+")")
	return p
}

// errHelp is returned when -h or --help asked for the usage: it is printed
// to stdout and kanade exits 0.
var errHelp = errors.New("help requested")

func (f *flags) parse(args []string) error {
	// The usage goes to stdout when asked for, to stderr beside an error.
	f.FlagSet.SetOutput(io.Discard)
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.FlagSet.SetOutput(os.Stdout)
			f.FlagSet.Usage()
			return errHelp
		}
		f.FlagSet.SetOutput(os.Stderr)
		f.FlagSet.Usage()
		return err
	}
	if len(f.errs) > 0 {
		return fmt.Errorf("%s", strings.Join(f.errs, "; "))
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", f.Args())
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
