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
		fmt.Fprintln(os.Stderr, "kanade:", err)
		os.Exit(1)
	}
}
