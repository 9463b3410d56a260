package main

import "sync/atomic"

type atomicBool = atomic.Bool
