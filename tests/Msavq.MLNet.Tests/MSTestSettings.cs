// Torch tests share native thread pools and dispose scopes; run them one at a time.
[assembly: DoNotParallelize]
