package store_test

import (
	"testing"

	"github.com/chimera-fabric/fabric/store"
	"github.com/chimera-fabric/fabric/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}
