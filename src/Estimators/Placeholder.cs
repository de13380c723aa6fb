namespace Msavq.MLNet;
