package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// execMainEnv, when set to 1, makes the test binary run the gateway's
// main instead of the tests: TestSIGTERM starts the real program this way
// and sends it real signals.
const execMainEnv = "GATEWAY_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
