module github.com/flextok-sdk/flextok

go 1.26
