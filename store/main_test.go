package store_test

import (
	"testing"

	"authd/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
