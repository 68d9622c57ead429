package workload_test

import (
	"encoding/pem"
	"testing"

	"authd/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
