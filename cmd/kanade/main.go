// Command kanade is the kanade backend: `kanade serve` runs a node,
// `kanade version` prints the version.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, errHelp) {
		var st exitStatus
		if errors.As(err, &st) {
			os.Exit(st.code) // `kanade run`: the script's own exit code
		}
		fmt.Fprintln(os.Stderr, "kanade:", err)
		os.Exit(1)
	}
}
