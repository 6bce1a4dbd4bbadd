package report

import (
	"os"
	"testing"
)

// A trace written to /dev/null must not replace the device with a file.
func TestWriteFileDevice(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("only root could replace /dev/null")
	}
	if err := WriteFile(os.DevNull, &Doc{Schema: Schema}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(os.DevNull)
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is no longer a device: %v %v", st.Mode(), err)
	}
}
