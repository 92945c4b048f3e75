package main

import "go.uber.org/zap/zapcore"

func zapLevelError() zapcore.Level { return zapcore.ErrorLevel }
