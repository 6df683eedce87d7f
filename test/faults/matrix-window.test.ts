import { defineMatrix, MATRIX_SHARES } from './matrix';

// The fault matrix (matrix.ts): the cells first found in the rollback-window and hooks runs.
defineMatrix(MATRIX_SHARES.window);
