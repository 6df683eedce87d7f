import { defineMatrix, MATRIX_SHARES } from './matrix';

// The fault matrix (matrix.ts): the cells first found in the TLS runs.
defineMatrix(MATRIX_SHARES.tls);
