import { defineConfig } from 'vite';

// One page (the app picks the user or operator view from the path) and fixed asset names, so
// the Rust binary embeds exactly three files (crates/ringmaster-server/src/web.rs).
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/app.js',
        chunkFileNames: 'assets/app.js',
        assetFileNames: 'assets/app[extname]',
      },
    },
  },
});
