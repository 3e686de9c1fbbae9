import { register } from 'node:module';
register(new URL('./fs-hooks.mjs', import.meta.url));
