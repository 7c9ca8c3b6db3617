package results

import (
	"fmt"
	"os"
	"testing"

	"github.com/kanade-go/kanade/store"
)

// plainOutputs says how the tests' rows store their outputs: TestMain runs
// every test of the package twice, once with outputs zstd-compressed as
// the projector writes them by default and once plain (a database from
// before compression, or a node started with plain outputs), so the two
// must answer every query identically.
var plainOutputs bool

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		plainOutputs = true
		fmt.Println("results: the same tests again with plain outputs")
		code = m.Run()
	}
	os.Exit(code)
}

// storedOutput is an output as the test's rows store it, and its preview.
// Compressed mode compresses every output, however short (the projector
// keeps outputs under store.CompressMin plain), so every query meets a
// compressed value.
func storedOutput(s string) (value, preview any) {
	if plainOutputs {
		return s, nil
	}
	return store.CompressOutput(s), store.Preview(s, store.PreviewChars)
}
